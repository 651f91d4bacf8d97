"""What a plugin's hook module imports at discovery, measured in a fresh interpreter.

Discovery imports every installed plugin's hook module (``tlcore plugins``, the first
``open_lazy``), so each one that imports dask, numpy or its native library slows tlcore down for
everyone, whatever file they open. The hook module may import tlcore, the standard library and
its own package; the rest belongs inside the hooks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

_PROBE = """
import importlib, json, sys
import tlcore
before = set(sys.modules)
module_name, _, attr = {value!r}.partition(":")
plugin = importlib.import_module(module_name)
for part in filter(None, attr.split(".")):
    plugin = getattr(plugin, part)
from tlcore.readers.registry import _plugin_object
_plugin_object(plugin).reader_info()
added = sorted(set(sys.modules) - before)
print("TLCORE-IMPORTS:" + json.dumps(added))
"""


@dataclass(frozen=True)
class ImportReport:
    entry_point: str
    added: tuple[str, ...]  # every module the hook module brought in
    foreign: tuple[str, ...]  # top-level packages that are neither stdlib, tlcore nor its own


def hook_module_imports(entry_point: str) -> ImportReport:
    """Import the entry point's module (``"pkg.reader"`` or ``"pkg.reader:obj"``) in a fresh
    interpreter, after ``import tlcore``, call its ``reader_info()`` and list what it loaded."""
    env = dict(os.environ)
    # The same search path as this interpreter: plugins installed into a test's site folder.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(value=entry_point)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("TLCORE-IMPORTS:")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(
            f"importing {entry_point} in a fresh interpreter failed:\n{result.stderr[-3000:]}"
        )
    added = tuple(json.loads(line.removeprefix("TLCORE-IMPORTS:")))
    own = entry_point.split(":")[0].split(".")[0]
    allowed = set(sys.stdlib_module_names) | {"tlcore", "pluggy", own}
    foreign = sorted({m.split(".")[0] for m in added} - allowed)
    return ImportReport(entry_point, added, tuple(foreign))
