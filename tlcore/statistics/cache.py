"""Statistics remembered per process and on disk, keyed by the file's identity (size and
modification time, or ETag, of the file or of an OME-Zarr store's metadata), the scene, level,
channels, time range and percentiles asked for: each worker and each run pays once, and a file
that changes is estimated again.

The folder is ``$TLCORE_STATS_DIR``, else ``$TLCORE_CACHE_DIR/stats``, else
``$XDG_CACHE_HOME/tlcore/stats`` (``~/.cache/tlcore/stats``). Entries are small JSON files,
written atomically; an unreadable entry is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlcore.io.source import Source

STATS_ENV = "TLCORE_STATS_DIR"
_memory: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()
#: Bump when the estimate changes, so old entries are not reused.
VERSION = 1
_METADATA = ("zarr.json", ".zattrs", ".zgroup", ".zarray")


def stats_dir() -> Path:
    """The on-disk cache folder (see the module docstring)."""
    chosen = os.environ.get(STATS_ENV)
    if chosen:
        return Path(os.path.expanduser(chosen))
    base = os.environ.get("TLCORE_CACHE_DIR")
    if base:
        return Path(os.path.expanduser(base)) / "stats"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "tlcore" / "stats"


def _stat_entry(info: Mapping[str, Any]) -> list[Any]:
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return [int(info.get("size") or 0), str(tag) if tag is not None else None]


def identity(path: Any, storage_options: Mapping[str, Any] | None = None) -> list[Any]:
    """What changes when the file changes: size and mtime (local), size and ETag or
    modification time (remote); for a folder (OME-Zarr), those of its metadata documents too."""
    source = Source.from_any(path, storage_options)
    if source.is_local:
        local = source.local_path()
        st = local.stat()
        out: list[Any] = [st.st_size, st.st_mtime_ns]
        if local.is_dir():
            for name in _METADATA:
                meta = local / name
                if meta.exists():
                    mst = meta.stat()
                    out += [name, mst.st_size, mst.st_mtime_ns]
        return out
    fs = source.filesystem()
    info = fs.info(source.uri)
    out = _stat_entry(info)
    if info.get("type") == "directory":
        for name in _METADATA:
            try:
                out += [name, *_stat_entry(fs.info(f"{source.uri.rstrip('/')}/{name}"))]
            except FileNotFoundError:
                continue
    return out


def key_of(parts: Mapping[str, Any]) -> str:
    """A stable digest of the request and the file's identity."""
    text = json.dumps({"v": VERSION, **parts}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def get(key: str) -> tuple[dict[str, Any], str] | None:
    """The remembered entry and where it came from (``"memory"`` or ``"disk"``), or None."""
    with _lock:
        found = _memory.get(key)
    if found is not None:
        return found, "memory"
    path = stats_dir() / f"{key}.json"
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict):
        return None
    with _lock:
        _memory[key] = entry
    return entry, "disk"


def put(key: str, entry: dict[str, Any]) -> None:
    """Remember ``entry`` in this process and on disk (best effort: an unwritable cache folder
    only costs the next run a new estimate)."""
    with _lock:
        _memory[key] = entry
    folder = stats_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass


def clear_memory() -> None:
    """Forget this process's entries (the disk cache stays)."""
    with _lock:
        _memory.clear()
