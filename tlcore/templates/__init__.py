"""The plugin template behind ``tlcore new-plugin NAME``: a distribution that passes the
conformance kit the moment it is written (a reader of ``.npy``-per-timepoint folders, to be
replaced by the author's format).

The files under ``plugin/`` end in ``.tmpl`` (so no tool mistakes them for tlcore's own code) and
hold ``{{name}}``, ``{{dist}}``, ``{{package}}`` and ``{{ext}}``; a ``__package__`` folder is
renamed to the package. Standard library only: the command must not need pytest or numpy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

TEMPLATE = Path(__file__).parent / "plugin"
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class PluginNames:
    name: str  # the reader's name and entry point name: "my-format"
    dist: str  # "tlcore-my-format"
    package: str  # "tlcore_my_format"
    ext: str  # ".myformat"

    @classmethod
    def from_name(cls, name: str) -> PluginNames:
        if not _NAME.match(name):
            raise ValueError(
                f"plugin name {name!r}: use lower-case letters, digits and single dashes, "
                "starting with a letter (for example 'my-format')"
            )
        return cls(name, f"tlcore-{name}", f"tlcore_{name.replace('-', '_')}",
                   "." + name.replace("-", ""))  # fmt: skip

    def fill(self, text: str) -> str:
        for key, value in vars(self).items():
            text = text.replace("{{" + key + "}}", value)
        return text


def write_plugin(name: str, directory: str | os.PathLike[str] = ".") -> Path:
    """Write the plugin distribution ``tlcore-<name>`` into ``directory`` and return its folder.

    Raises:
        ValueError: a bad name.
        FileExistsError: the folder exists already (nothing is overwritten).
    """
    names = PluginNames.from_name(name)
    root = Path(directory) / names.dist
    if root.exists():
        raise FileExistsError(f"{root} already exists; choose another --dir or remove it")
    for template in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATE).with_suffix("")  # drop .tmpl
        target = root / Path(*(names.package if p == "__package__" else p for p in relative.parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(names.fill(template.read_text()))
    return root
