"""What a local file or zarr store looks like on disk, to tell whether something parsed from it
earlier still describes it: :func:`local_stamp`."""

from __future__ import annotations

import os
from typing import Any

from tlcore.io.source import is_remote_path

__all__ = ["METADATA_FILES", "STAMPED_CHILDREN", "local_stamp"]

#: Metadata files of a zarr group or array (v2 and v3), whose rewrite means the store changed.
METADATA_FILES = ("zarr.json", ".zattrs", ".zgroup", ".zarray")
#: Folders directly inside a store whose metadata is stamped too, at most (a plate's wells are
#: not).
STAMPED_CHILDREN = 64


def local_stamp(path: str) -> tuple[Any, ...] | None:
    """What a local file (or a store's folder, its metadata and the metadata of the folders
    directly inside it) looks like on disk: inode, size and modification time; equal stamps
    mean unchanged. None for a URL: asking an object store costs a request, and remote objects
    are read as versioned by their ETag (:mod:`tlcore.io.remote`).

    The folders inside count because a store grows there: appending timepoints to an OME-Zarr
    image (a live acquisition) rewrites only its arrays' metadata (``0/zarr.json``...), and an
    image opened before would keep its old shape."""
    if is_remote_path(path):
        return None
    local = path.removeprefix("file://")
    try:
        st = os.stat(local)
    except OSError:
        return (None,)  # a file that is gone, or was never there
    found: list[Any] = [(st.st_ino, st.st_size, st.st_mtime_ns)]
    if not os.path.isdir(local):
        return tuple(found)
    found += _metadata_stamps(local)
    try:
        children = sorted(e.name for e in os.scandir(local) if e.is_dir())
    except OSError:
        children = []
    for name in children[:STAMPED_CHILDREN]:
        found += _metadata_stamps(os.path.join(local, name))
    return tuple(found)


def _metadata_stamps(folder: str) -> list[Any]:
    out: list[Any] = []
    for name in METADATA_FILES:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return out
