"""A per-process cache of opened images, keyed by (path, scene, level, storage options).

Datasets and loaders share it, so a file's metadata is read once per process however many
manifest rows name it (the rows keep their own time ranges: only the opened image is shared).

The parent's opened images are handed over to DataLoader workers, so that a worker's first crop
costs its chunk requests only: no reader choice, no metadata read, no listing. What travels is
what the ``open_lazy`` contract already promises: an image pickles without open file handles
(its readers carry their parsed metadata and reopen in the new process).

* Forked child: the parent's images are set aside, never used as inherited (file positions and
  native library state are not fork-safe); the first lookup of one takes it through a pickle
  round trip, which gives what a spawned worker would get. fsspec's shared event loop is reset
  there too, so remote reads start a loop of their own.
* Pickled (spawn, forkserver): :func:`handover` packs the opened images of some paths into a
  :class:`Handover`, which puts them into the cache of the process that unpickles it (the
  training dataset carries one in its pickled state).

An image that fails its round trip is opened again, as before.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from tlcore.images import LazyImage
from tlcore.io.stamps import local_stamp
from tlcore.readers.api import open_lazy

_lock = threading.Lock()
_images: OrderedDict[tuple[Any, ...], LazyImage] = OrderedDict()
#: A forked child's images from its parent, not used until revived (:func:`_revive`).
_inherited: dict[tuple[Any, ...], LazyImage] = {}
#: What each local file or store looked like on disk when its image was opened
#: (:func:`tlcore.io.stamps.local_stamp`).
_stamps: dict[tuple[Any, ...], tuple[Any, ...] | None] = {}
_log = logging.getLogger(__name__)
#: How many opened images each process keeps (the least recently used ones are dropped).
max_images = 256


def _key(
    path: Any, scene: Any, level: int, storage_options: Mapping[str, Any] | None
) -> tuple[Any, ...]:
    options = json.dumps(dict(storage_options or {}), sort_keys=True, default=repr)
    return (os.fspath(path) if isinstance(path, os.PathLike) else str(path), scene, level, options)


def _fresh(key: tuple[Any, ...]) -> bool:
    """Whether the image cached under ``key`` still describes its file (called under the
    lock). A file rewritten since it was opened would be read through stale offsets and
    shapes: plausible garbage, so its image is dropped and the file opened again."""
    if key not in _stamps or _stamps[key] == local_stamp(key[0]):
        return True
    _log.info("%s changed on disk since it was opened; opening it again", key[0])
    _images.pop(key, None)
    _inherited.pop(key, None)
    _stamps.pop(key, None)
    return False


def open_cached(
    path: Any,
    scene: int | str | None = 0,
    level: int = 0,
    storage_options: Mapping[str, Any] | None = None,
    reader: str | None = None,
) -> LazyImage:
    """:func:`tlcore.open_lazy`, once per process for each (path, scene, level, options).

    A local file or store rewritten on disk since it was opened (another inode, size or
    modification time; for a store, of its folder or root metadata) is opened again."""
    key = (*_key(path, scene, level, storage_options), reader)
    with _lock:
        _fresh(key)
        image = _images.get(key)
        if image is not None:
            _images.move_to_end(key)
            return image
        # Revived under the lock: a worker's prefetch thread and its main thread asking for
        # the same image at once get the one revived copy, not a second opening.
        inherited = _inherited.pop(key, None)
        image = _revive(inherited) if inherited is not None else None
        if image is not None:
            _images[key] = image
            return image
    stamp = local_stamp(key[0])  # before opening: a rewrite during the open is seen next time
    image = open_lazy(
        path, scene=scene, level=level, reader=reader, storage_options=storage_options or None
    )
    with _lock:
        _images[key] = image
        _stamps[key] = stamp
        while len(_images) > max_images:
            _stamps.pop(_images.popitem(last=False)[0], None)
    return image


def _revive(image: LazyImage | bytes) -> LazyImage | None:
    """``image`` as a process of its own gets it: unpickled (from a pickle round trip when
    inherited through a fork). None when it does not survive (it is then opened again)."""
    try:
        blob = image if isinstance(image, bytes) else pickle.dumps(image, protocol=5)
        revived = pickle.loads(blob)
    except Exception as exc:  # a plugin breaking the pickling contract: open it again
        _log.debug("an opened image could not be handed over (%s); opening it again", exc)
        return None
    return revived if isinstance(revived, LazyImage) else None


def clear() -> None:
    """Forget every opened image in this process (handed-over ones included)."""
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child
    _images.clear()
    _inherited.clear()
    _stamps.clear()


class Handover:
    """Opened images packed to travel with a pickled object (:func:`handover`): unpickling it
    puts them into the cache of that process (where the cache has none for the same key).

    Each image is pickled on its own, so one that cannot be is left out, not the whole."""

    def __init__(
        self,
        entries: list[tuple[tuple[Any, ...], LazyImage]],
        stamps: Mapping[tuple[Any, ...], tuple[Any, ...] | None] | None = None,
    ) -> None:
        self.entries = entries
        self.stamps = dict(stamps or {})

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict[str, Any]:
        packed = []
        for key, image in self.entries:
            try:
                packed.append((key, pickle.dumps(image, protocol=5)))
            except Exception as exc:
                _log.debug("%s is not handed over (%s): workers open it again", key[0], exc)
        return {"packed": packed, "stamps": self.stamps}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.entries = []
        self.stamps = dict(state.get("stamps", {}))
        for key, blob in state["packed"]:
            image = _revive(blob)
            if image is not None:
                self.entries.append((key, image))
        with _lock:
            for key, image in self.entries:
                if key not in _images:
                    _images[key] = image
                    if key in self.stamps:
                        _stamps[key] = self.stamps[key]
            while len(_images) > max_images:
                _stamps.pop(_images.popitem(last=False)[0], None)


def handover(paths: Iterable[Any] | None = None) -> Handover:
    """The images this process has opened for ``paths`` (every one when None), packed to
    travel with a pickled dataset (:class:`Handover`)."""
    wanted = None if paths is None else {_key(p, None, 0, None)[0] for p in paths}
    with _lock:
        entries = [(k, im) for k, im in _images.items() if wanted is None or k[0] in wanted]
        stamps = {k: _stamps[k] for k, _ in entries if k in _stamps}
    return Handover(entries, stamps)


def _after_fork() -> None:
    """In a forked child: set the parent's images aside (each is revived on its first lookup,
    :func:`_revive`), and reset fsspec's event-loop state when fsspec is loaded (the loop
    thread of an S3/GCS/HTTP filesystem does not survive a fork; a child that reused it would
    hang). fsspec resets its loop itself, not its lock: both here."""
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child
    _inherited.update(_images)
    _images.clear()
    asyn = sys.modules.get("fsspec.asyn")
    if asyn is not None:
        asyn.reset_lock()
        asyn.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork)
