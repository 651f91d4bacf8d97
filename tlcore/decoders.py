"""Faster decoders for the one-region read of :mod:`tlcore.compute`, switched on by
``TLCORE_DECODER``:

* ``tensorstore``: the region is read by tensorstore (C++, decodes the touched chunks on
  every core) from the same zarr array;
* ``zarrs``: the array is reopened with zarr's ``zarrs`` (Rust) codec pipeline, for that
  array only (zarr's global configuration is left alone).

Either applies to readers whose native handle is a local zarr array (the OME-Zarr plugin's);
other readers, and the dask fallback, read as usual. Neither library survives ``fork`` once it
has been used: a process forked from one that used the decoder (a DataLoader worker with the
default start method, after the parent read a crop) silently reads through the plugin instead,
with one warning. So: set ``TLCORE_DECODER`` and ``multiprocessing_context="spawn"`` (or
``"forkserver"``) on the datamodule; ``fork`` without a decoder stays the safe default.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import numpy as np

from tlcore.lazy import ArrayReader

__all__ = ["DECODER_ENV", "DECODERS", "handle_for", "requested"]

DECODER_ENV = "TLCORE_DECODER"
DECODERS = ("tensorstore", "zarrs")

_lock = threading.Lock()
_used_in: dict[str, int] = {}  # decoder -> pid of the process that first used it
_handles: dict[tuple[Any, ...], Any] = {}
_warned: set[str] = set()


def requested() -> str | None:
    """The decoder ``TLCORE_DECODER`` names (None when unset, empty or ``default``)."""
    name = os.environ.get(DECODER_ENV, "").strip().lower()
    if name in ("", "default", "zarr", "none"):
        return None
    if name not in DECODERS:
        raise ValueError(f"{DECODER_ENV}={name!r}: expected one of {', '.join(DECODERS)}")
    return name


def handle_for(reader: ArrayReader) -> Any | None:
    """An open handle of ``reader``'s stored array through the requested decoder, for
    :meth:`tlcore.lazy.ArrayReader.read`; None to read through the reader as usual."""
    name = requested()
    if name is None:
        return None
    pid = os.getpid()
    first = _used_in.get(name)
    if first is not None and first != pid:
        _warn_once(name, f"{DECODER_ENV}={name} is not used in this process: it was forked from "
                   f"one that had used {name}, which does not survive fork. Use "
                   "multiprocessing_context='spawn' or 'forkserver'.")  # fmt: skip
        return None
    native = reader.handle
    key = (name, pid, type(reader).__qualname__, reader.identity())
    with _lock:
        if key in _handles:
            return _handles[key]
        found = _open(name, native)
        if found is not None:
            _used_in.setdefault(name, pid)
        _handles[key] = found
        return found


def _open(name: str, native: Any) -> Any | None:
    try:
        import zarr
        from zarr.storage import LocalStore
    except ImportError:
        return None
    if not isinstance(native, zarr.Array) or not isinstance(native.store, LocalStore):
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


def _warn_once(name: str, message: str) -> None:
    if name not in _warned:
        _warned.add(name)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
