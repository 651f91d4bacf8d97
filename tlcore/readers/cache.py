"""A per-process cache of opened images, keyed by (path, scene, level, storage options).

Datasets and loaders share it, so a file's metadata is read once per process however many
manifest rows name it (the rows keep their own time ranges: only the opened image is shared).
The cache is emptied in a forked child, so a DataLoader worker opens its own files instead of
inheriting the parent's handles (file positions and native library state are not fork-safe), and
fsspec's shared event loop is reset there, so remote reads start a loop of their own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from tlcore.images import LazyImage
from tlcore.readers.api import open_lazy

_lock = threading.Lock()
_images: OrderedDict[tuple[Any, ...], LazyImage] = OrderedDict()
#: How many opened images each process keeps (the least recently used ones are dropped).
max_images = 256


def _key(
    path: Any, scene: Any, level: int, storage_options: Mapping[str, Any] | None
) -> tuple[Any, ...]:
    options = json.dumps(dict(storage_options or {}), sort_keys=True, default=repr)
    return (os.fspath(path) if isinstance(path, os.PathLike) else str(path), scene, level, options)


def open_cached(
    path: Any,
    scene: int | str | None = 0,
    level: int = 0,
    storage_options: Mapping[str, Any] | None = None,
    reader: str | None = None,
) -> LazyImage:
    """:func:`tlcore.open_lazy`, once per process for each (path, scene, level, options)."""
    key = (*_key(path, scene, level, storage_options), reader)
    with _lock:
        image = _images.get(key)
        if image is not None:
            _images.move_to_end(key)
            return image
    image = open_lazy(
        path, scene=scene, level=level, reader=reader, storage_options=storage_options or None
    )
    with _lock:
        _images[key] = image
        while len(_images) > max_images:
            _images.popitem(last=False)
    return image


def clear() -> None:
    """Forget every opened image in this process."""
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child
    _images.clear()


def _after_fork() -> None:
    """In a forked child: forget the parent's images, and reset fsspec's event-loop state when
    fsspec is loaded (the loop thread of an S3/GCS/HTTP filesystem does not survive a fork; a
    child that reused it would hang). fsspec resets its loop itself, not its lock: both here."""
    clear()
    asyn = sys.modules.get("fsspec.asyn")
    if asyn is not None:
        asyn.reset_lock()
        asyn.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork)
