"""What the plugin's cached metadata of a local store depends on, as it is on disk."""

from __future__ import annotations

import os
from typing import Any

from tlcore import Source

#: Metadata files of a zarr group or array (v2 and v3).
METADATA_FILES = ("zarr.json", ".zattrs", ".zgroup", ".zarray")
#: Folders inside a group whose metadata :func:`stamp` covers, at most.
STAMPED_CHILDREN = 64


def stamp(source: Source, path: str = "") -> tuple[Any, ...] | None:
    """The metadata files of the group at ``path`` and of the folders directly inside it
    (its arrays, its child groups) as they are on disk (name, inode, size, mtime): what the
    parsed metadata cached under it depends on. Appending timepoints rewrites only the arrays'
    metadata (``0/zarr.json``), which must open the new shape. None for a remote store (its
    metadata is read once per process)."""
    if not source.is_local:
        return None
    base = os.path.join(source.uri, path) if path else source.uri
    try:
        children = sorted(e.name for e in os.scandir(base) if e.is_dir())
    except OSError:
        children = []
    found: list[Any] = []
    for folder in ("", *children[:STAMPED_CHILDREN]):
        for name in METADATA_FILES:
            where = os.path.join(base, folder, name)
            try:
                st = os.stat(where)
            except OSError:
                continue
            found.append((folder, name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)
