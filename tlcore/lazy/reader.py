"""Building blocks for a reader's lazy array: a picklable TCZYX window onto stored pixels.

A plugin subclasses :class:`ArrayReader` (say how to open the native array and how to read one
region) and calls :func:`tlcore.lazy.as_dask` (in :mod:`tlcore.lazy.daskarray`, which also
makes a plain dask ``.compute()`` of a crop one region read). That gives, for free, what the
``open_lazy`` contract asks: TCZYX order, metadata-only opening, pickling without open
handles, and a dask graph whose per-crop cost does not grow with the number of chunks.
"""

from __future__ import annotations

import abc
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import dask.array as da

Region = tuple[slice, slice, slice, slice, slice]


@dataclass
class ReadStats:
    """Process-wide count of the regions tlcore readers served (for demos and benchmarks)."""

    regions: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.regions += 1
            self.bytes += nbytes

    def reset(self) -> None:
        with self._lock:
            self.regions = 0
            self.bytes = 0

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.regions, self.bytes


#: Regions and bytes served by every :class:`ArrayReader` in this process.
read_stats = ReadStats()


class ArrayReader(abc.ABC):
    """A TCZYX, numpy-style view of one stored array that opens its file lazily.

    Subclasses set ``shape``, ``dtype`` and ``chunks`` in ``__init__`` from metadata alone and
    implement :meth:`_open` and :meth:`_read`. The handle that :meth:`_open` returns is cached
    per process and dropped on pickling, so an unpickled reader (in a DataLoader worker) reopens
    the file on its first read.
    """

    ndim = 5

    def __init__(
        self,
        shape: Sequence[int],
        dtype: Any,
        chunks: Sequence[int],
    ) -> None:
        if len(shape) != 5 or len(chunks) != 5:
            raise ValueError(f"shape and chunks must be TCZYX, got {shape} and {chunks}")
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(max(1, min(int(c), max(int(n), 1))) for c, n in zip(chunks, shape))
        self._handle: Any = None
        self._handle_pid = os.getpid()  # the process the handle and its lock belong to
        self._handle_lock = threading.Lock()

    # -- what a plugin implements ------------------------------------------------------------
    @abc.abstractmethod
    def identity(self) -> tuple[Any, ...]:
        """A tuple of plain values that identifies the stored array (uri, scene, level...).
        Used to name the dask array deterministically."""

    @abc.abstractmethod
    def _open(self) -> Any:
        """Open the native array or file, read-only. Called at most once per process."""

    @abc.abstractmethod
    def _read(self, handle: Any, region: Region) -> np.ndarray:
        """Return the pixels of ``region`` (five slices with concrete start/stop and step 1) as
        an array of exactly that shape, TCZYX, in the declared dtype. A different dtype is cast
        only when the cast is lossless (``np.can_cast(..., "safe")``); otherwise reading raises
        ``TypeError`` naming the reader."""

    # -- what tlcore provides ----------------------------------------------------------------
    @property
    def handle(self) -> Any:
        """The open native handle, opened on first use in each process: a forked DataLoader
        worker that inherits an open handle reopens instead of sharing the parent's file
        position and native library state."""
        pid = os.getpid()
        if self._handle is None or self._handle_pid != pid:
            if self._handle_pid != pid:
                # A lock a parent's thread held at fork time stays held in the child.
                self._handle_lock = threading.Lock()
            with self._handle_lock:
                if self._handle is None or self._handle_pid != pid:
                    self._handle = self._open()
                    self._handle_pid = pid
        return self._handle

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)

    def decoder_handle(self) -> Any | None:
        """Another open handle of the same stored array that reads regions faster than
        :attr:`handle`, or None (the default) to read through :attr:`handle`.

        A format with a faster decoder overrides this: the OME-Zarr plugin returns
        :func:`tlcore.decoders.handle_for` (tlcore's own zarr decoder, or the one
        ``TLCORE_DECODER`` names). :meth:`_read` receives whichever handle is used, so the
        decoder's handle must accept the same indexing as the native one."""
        return None

    def read(self, key: Any, handle: Any = None) -> np.ndarray:
        """``self[key]``, through ``handle`` when given (another open handle of the same
        stored array), else through :meth:`decoder_handle`, else the reader's own handle: the
        same checks, the same :data:`read_stats` count."""
        box, post = split_index(key, self.shape)
        region: Region = (box[0], box[1], box[2], box[3], box[4])
        if handle is None:
            handle = self.decoder_handle()
        out = self._read(self.handle if handle is None else handle, region)
        expected = tuple(s.stop - s.start for s in region)
        if out.shape != expected:
            raise ValueError(
                f"{type(self).__name__} returned shape {out.shape} for region {region}, "
                f"expected {expected}"
            )
        out = self._checked_dtype(np.asarray(out), region)
        read_stats.add(out.nbytes)
        return out[post] if post else out

    def _checked_dtype(self, out: np.ndarray, region: Region) -> np.ndarray:
        """``out`` in the declared dtype. A cast happens only where numpy calls it safe (no
        value can change: uint8 into uint16, big- into little-endian); anything else is the
        reader's bug, and a silent cast would hand the user wrong pixels."""
        if out.dtype == self.dtype:
            return out
        if np.can_cast(out.dtype, self.dtype, casting="safe"):
            return out.astype(self.dtype)
        raise TypeError(
            f"{self!r}: _read returned {out.dtype} pixels for region {region}, but the reader "
            f"declares {self.dtype} and casting {out.dtype} to {self.dtype} can lose values. "
            "Return the declared dtype from _read, or declare the dtype the file really holds."
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        del state["_handle_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._handle_pid = os.getpid()
        self._handle_lock = threading.Lock()

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (type(self).__qualname__, self.identity(), self.shape, str(self.dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity()!r}, shape={self.shape}, dtype={self.dtype})"


def expand_index(key: Any, ndim: int) -> tuple[Any, ...]:
    """A basic numpy index as one entry per axis: ``...`` expanded, missing trailing axes as
    ``slice(None)``. ``IndexError`` when it names more axes than ``ndim``."""
    keys: tuple[Any, ...] = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in keys):
        at = next(i for i, k in enumerate(keys) if k is Ellipsis)
        keys = keys[:at] + (slice(None),) * (ndim - len(keys) + 1) + keys[at + 1 :]
    keys = keys + (slice(None),) * (ndim - len(keys))
    if len(keys) != ndim:
        raise IndexError(f"too many indices for a {ndim}-D array: {keys!r}")
    return keys


def split_index(key: Any, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[Any, ...]]:
    """Split a basic numpy index (integers, slices with any step, ``...``) into the smallest
    step-1 box to read and the index that turns the box into ``array[key]`` (empty when the
    box is the answer). Booleans are refused: numpy reads them as masks, not positions."""
    region: list[slice] = []
    post: list[Any] = []
    needed = False
    for k, n in zip(expand_index(key, len(shape)), shape):
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} out of range for axis of size {n}")
            region.append(slice(i, i + 1))
            post.append(0)
            needed = True
        elif isinstance(k, slice):
            picked = range(*k.indices(n))
            if len(picked) == 0:
                region.append(slice(0, 0))
                post.append(slice(None))
                continue
            lo, hi = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
            region.append(slice(lo, hi))
            if picked.step == 1:
                post.append(slice(None))
            else:  # the same positions, counted from the box's start
                needed = True
                moved = range(picked.start - lo, picked.stop - lo, picked.step)
                stop: int | None = moved.stop if moved.stop >= 0 else None
                post.append(slice(moved.start, stop, moved.step))
        else:
            raise IndexError(f"only integers, slices and ... are supported, got {k!r}")
    return tuple(region), (tuple(post) if needed else ())


def reader_of(array: Any) -> ArrayReader | None:
    """The :class:`ArrayReader` behind ``array`` when ``array`` is exactly what
    :func:`~tlcore.lazy.daskarray.as_dask` built (the whole reader, nothing applied since), else
    None. Costs the same whatever the number of chunks: the graph's one layer is looked at, not
    its tasks."""
    from dask.blockwise import Blockwise

    layers = getattr(getattr(array, "dask", None), "layers", None)
    if layers is None or len(layers) != 1:
        return None
    layer = next(iter(layers.values()))
    if not isinstance(layer, Blockwise) or not layer.indices or len(layer.io_deps) != 1:
        return None
    reader = layer.indices[0][0]
    if not isinstance(reader, ArrayReader) or tuple(array.shape) != reader.shape:
        return None
    return reader


def dask_window(window: Any, chunks: Sequence[Any], name: str) -> da.Array:
    """A dask array over ``window`` (an :class:`ArrayReader`, or a view of one: ``shape``,
    ``dtype``, ``ndim`` and numpy basic indexing), chunked as ``chunks`` (dask's ``chunks``:
    a size per axis, or the sizes of each axis's chunks), named ``name``.

    Nothing is read: dask is given the dtype and an empty meta array, so it never probes the
    window. The window is inlined into each task instead of being one shared graph key, so the
    per-crop cost does not grow with the number of chunks (see NOTES on ``inline_array``); tlcore
    indexes it itself (no fancy indexing, no lock, no ``asarray``)."""
    import dask.array as da

    return da.from_array(
        window,
        chunks=tuple(chunks),
        name=name,
        inline_array=True,
        fancy=False,
        lock=False,
        asarray=False,
        meta=np.empty((0,) * window.ndim, dtype=window.dtype),
    )
