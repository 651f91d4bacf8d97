"""The decoder choice (``TLCORE_DECODER``) and the per-reader cache of decoder handles;
see :mod:`tlcore.decoders`."""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from typing import Any

import numpy as np

from tlcore.lazy.reader import ArrayReader

__all__ = ["DECODER_ENV", "DECODERS", "DEFAULT_DECODER", "FORK_SAFE", "handle_for", "requested"]

DECODER_ENV = "TLCORE_DECODER"
DECODERS = ("tensorstore", "zarrs", "tlcore")
#: The decoder an unset ``TLCORE_DECODER`` means (None: the plugin's own zarr read).
DEFAULT_DECODER: str | None = "tlcore"
#: Decoders that a process forked after using them may keep using.
FORK_SAFE = frozenset({"tlcore"})

_lock = threading.Lock()
_used_in: dict[str, int] = {}  # decoder -> pid of the process that first used it
# reader -> (pid, decoder name, the native handle it was opened from, the decoder's handle).
# Per reader, checked against the reader's native handle: a store rewritten in place and
# opened again (open_lazy reads the new metadata, and its reader a new native handle) gets a
# decoder of the new layout, never one cached under the same uri with the old chunking; a
# forked child (whose reader reopens its native handle) opens its own.
_handles: weakref.WeakKeyDictionary[ArrayReader, tuple[int, str, Any, Any]] = (
    weakref.WeakKeyDictionary()
)
_warned: set[str] = set()


def requested() -> str | None:
    """The decoder ``TLCORE_DECODER`` names: :data:`DEFAULT_DECODER` when unset, empty or
    ``default``; None (the plugin's read) for ``zarr`` or ``none``."""
    name = os.environ.get(DECODER_ENV, "").strip().lower()
    if name in ("", "default"):
        return DEFAULT_DECODER
    if name in ("zarr", "none"):
        return None
    if name not in DECODERS:
        raise ValueError(f"{DECODER_ENV}={name!r}: expected one of {', '.join(DECODERS)}")
    return name


def handle_for(reader: ArrayReader) -> Any | None:
    """An open handle of ``reader``'s stored array through the requested decoder, for
    :meth:`tlcore.lazy.reader.ArrayReader.read`; None to read through the reader as usual."""
    name = requested()
    if name is None:
        return None
    pid = os.getpid()
    first = _used_in.get(name)
    if first is not None and first != pid and name not in FORK_SAFE:
        _warn_once(name, f"{DECODER_ENV}={name} is not used in this process: it was forked from "
                   f"one that had used {name}, which does not survive fork. Use "
                   "multiprocessing_context='spawn' or 'forkserver'.")  # fmt: skip
        return None
    native = reader.handle
    held = _handles.get(reader)
    if held is not None and held[0] == pid and held[1] == name and held[2] is native:
        return held[3]
    with _lock:
        found = _open(name, native)
        if found is not None and name not in FORK_SAFE:
            _used_in.setdefault(name, pid)
        _handles[reader] = (pid, name, native, found)
        return found


def _open(name: str, native: Any) -> Any | None:
    try:
        import zarr
        from zarr.storage import LocalStore
    except ImportError:
        return None
    if not isinstance(native, zarr.Array):
        return None
    if name == "tlcore":
        from tlcore.decoders import zarrfast

        # Local folders and object stores that fetch their own chunks; None where
        # unsupported: zarr reads it.
        return zarrfast.open_array(native)
    if not isinstance(native.store, LocalStore):
        return None
    try:
        if name == "zarrs":
            import zarrs  # noqa: F401  (fails here, not inside zarr, when it is missing)

            with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
                return zarr.open_array(store=native.store, path=native.path, mode="r")
        import tensorstore as ts

        driver = "zarr3" if native.metadata.zarr_format == 3 else "zarr"
        path = os.path.join(str(native.store.root), native.path)
        spec = {"driver": driver, "kvstore": {"driver": "file", "path": path}}
        return _TensorStoreArray(ts.open(spec, read=True, open=True).result())
    except ImportError:
        _warn_once(name, f"{DECODER_ENV}={name} but {name} is not installed (pip install {name})")
        return None


class _TensorStoreArray:
    """numpy-style basic indexing onto a tensorstore array, read at once."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.shape = tuple(store.shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.store[key].read().result())


def _after_fork_in_child() -> None:
    # A lock another thread of the parent held at fork time stays held in the child.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_once(name: str, message: str) -> None:
    if name not in _warned:
        _warned.add(name)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
