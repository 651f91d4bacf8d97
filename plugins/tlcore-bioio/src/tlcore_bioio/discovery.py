"""What can be known about bioio without importing it: its installed reader plugins (entry
points of the ``bioio.readers`` group, read from package metadata), the extensions they declare
(:mod:`tlcore.readers.bioio_formats`), and how a glob pattern's file names map to axes."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from importlib.metadata import entry_points

from tlcore.readers.bioio_formats import (
    BIOIO_PLUGINS,
    DIRECTORY_PLUGINS,
    install_hints,
    plugins_for,
)

GROUP = "bioio.readers"
GLOB_PLUGIN = "bioio-tiff-glob"
#: Micro-Manager's one-file-per-plane names: img_channel000_position001_time000000003_z004.tif
MICRO_MANAGER = re.compile(r"^img_channel_?\d+_position\d+_time\d+_z\d+\.tiff?$", re.IGNORECASE)
#: bioio-tiff-glob's default naming: four numbers read as S, T, C, Z (S0_T1_C2_Z3.tif).
DEFAULT_DIMS = "STCZ"
#: What Micro-Manager's four numbers are, in file-name order.
MICRO_MANAGER_DIMS = "CSTZ"


@functools.cache
def installed() -> dict[str, str]:
    """Installed bioio reader plugins: entry point name (``bioio-dv``) -> version. Read once
    per process (scanning package metadata reads hundreds of kilobytes)."""
    out: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        out.setdefault(ep.name, ep.dist.version if ep.dist is not None else "?")
    return dict(sorted(out.items()))


def describe() -> str:
    """One line for ``tlcore plugins``: the bioio readers found."""
    found = installed()
    if not found:
        return "bioio bridge: no bioio reader plugin installed (pip install bioio-imageio ...)"
    return "bioio bridge, below the native readers; bioio readers: " + ", ".join(
        f"{name} {version}" for name, version in found.items()
    )


def cheap_refusal(path: str) -> str | None:
    """Why no installed bioio plugin can read ``path``, when that is certain without importing
    bioio: every installed plugin is one :mod:`tlcore.readers.bioio_formats` knows, none declares
    the extension, and ``path`` is not a folder some installed plugin reads as an image. None when
    bioio has to be asked."""
    found = installed()
    if not found:
        return "no bioio reader plugin is installed (pip install bioio-imageio, bioio-dv...)"
    unknown = [name for name in found if name not in BIOIO_PLUGINS]
    if unknown or set(plugins_for(path)) & set(found):
        return None
    if os.path.isdir(path) and DIRECTORY_PLUGINS & set(found):
        return None
    reason = f"no installed bioio reader declares {os.path.basename(path)!r} ({', '.join(found)})"
    hints = install_hints(path, bridge_installed=True)
    return reason + ("; " + hints[0].strip() if hints else "")


@dataclass(frozen=True)
class GlobNaming:
    """How the numbers in the file names of a glob pattern map to axes: ``dims`` names, in
    order, the axis each number of a name indexes (``"STCZ"``, Micro-Manager's ``"CSTZ"``)."""

    dims: str
    label: str


def glob_naming(pattern: str, files: list[str], dims: str | None) -> GlobNaming | str:
    """The naming of ``files`` (what ``pattern`` matched), or why it is not understood.
    ``dims`` is the user's ``bioio_glob_dims`` option, which wins when given."""
    if not files:
        return f"no file matches {pattern}"
    names = [os.path.basename(f) for f in files]
    not_tiff = [n for n in names if not n.lower().endswith((".tif", ".tiff"))]
    if not_tiff:
        return f"{GLOB_PLUGIN} reads TIFF files only; the pattern matched {not_tiff[0]!r}"
    counts = {len(re.findall(r"\d+", n)) for n in names}
    if dims is not None:
        dims = dims.upper()
        if not dims or set(dims) - set("STCZ") or len(set(dims)) != len(dims):
            return f"bioio_glob_dims={dims!r}: give distinct letters of S, T, C, Z"
        if counts != {len(dims)}:
            return (
                f"bioio_glob_dims={dims!r} names {len(dims)} number(s), but the file names "
                f"hold {sorted(counts)} (e.g. {names[0]!r})"
            )
        return GlobNaming(dims, f"numbers as {dims} (bioio_glob_dims)")
    if all(MICRO_MANAGER.match(n) for n in names):
        return GlobNaming(MICRO_MANAGER_DIMS, "Micro-Manager names")
    if counts == {4}:
        return GlobNaming(DEFAULT_DIMS, "numbers as S, T, C, Z")
    return (
        f"the file names of {pattern} are not understood (e.g. {names[0]!r}): name them with "
        "four numbers read as S, T, C, Z (S0_T1_C2_Z3.tif), as Micro-Manager does "
        "(img_channel000_position000_time000000000_z000.tif), or give the storage option "
        "bioio_glob_dims with one letter of S, T, C, Z per number in the names (bioio_glob_dims"
        "='T' for frame_0001.tif)"
    )
