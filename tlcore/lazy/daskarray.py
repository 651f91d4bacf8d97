"""The dask array every reader builds on (:func:`as_dask`), and the dask optimisation that makes
a plain ``.compute()`` of a crop of it one region read, as :func:`tlcore.compute` does.

Users and other libraries crop a reader's dask array with numpy indexing and compute it:
``image.data[t, c, z0:z1, y0:y1, x0:x1].compute()``. Left to dask, that is one task per
storage chunk the crop touches, each reading its whole chunk (dask 2026.8 never fuses a slice
into ``from_array``'s getter when ``fancy=False``, which a reader needs), then a slice of each:
on strip TIFFs 20x the crop's bytes and a dozen reads where one would do.

:func:`optimize` is a dask array optimisation (dask's public ``array_optimize`` setting) that
:func:`as_dask` installs the first time it builds an array in a process, unless an
``array_optimize`` is already set. When the keys being computed are every block of a slice
chain over one :func:`as_dask` array (or one sample's
:class:`~tlcore.lazy.regions.ReaderView`), the crop is read as one region
(:func:`tlcore.lazy.compute.region_of_blocks`, the same planning as :func:`tlcore.compute`): for
``compute``, one task in place of dask's finalize step; for ``persist``, the read plus one task
per output block taking its part, so the result keeps the chunks dask declared. Every other
graph (arithmetic, ``map_blocks``, ``rechunk``, ``da.stack``, arrays not built by
``as_dask``), and crops over :data:`FUSE_MAX_BYTES` or :data:`FUSE_MAX_BLOCKS`, get dask's own
optimisation, unchanged.

``TLCORE_DIRECT_READ=0`` turns it off along with :func:`tlcore.compute`'s fast path;
``dask.config.set(array_optimize=...)`` replaces it (``False``: no optimisation at all).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcore.lazy.compute import direct_read_enabled, region_of_blocks
from tlcore.lazy.reader import ArrayReader, dask_window
from tlcore.lazy.regions import ReaderView, RegionRead

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["FUSE_MAX_BLOCKS", "FUSE_MAX_BYTES", "as_dask", "fused_graph", "install", "optimize"]

#: Crops up to this many bytes read as one region. A larger compute (a whole timepoint) keeps
#: one dask task per chunk, so dask's threads decode its chunks side by side.
FUSE_MAX_BYTES = 64 * 2**20

#: Outputs of more blocks than this are left to dask: planning replays every block's indexing.
FUSE_MAX_BLOCKS = 4096

_install_lock = threading.Lock()


def as_dask(reader: ArrayReader, chunks: Sequence[int] | None = None) -> da.Array:
    r"""Wrap ``reader`` in a dask array, chunked like the storage (or as ``chunks`` says).

    Nothing is read (:func:`~tlcore.lazy.reader.dask_window`). The first call in a process
    :func:`install`\ s :func:`optimize`: a plain ``.compute()`` of a crop of this array is then
    one region read of ``reader``.
    """
    from dask.base import tokenize

    install()
    chosen = tuple(chunks) if chunks is not None else reader.chunks
    return dask_window(reader, chosen, f"tlcore-{tokenize(reader)}")


def install() -> None:
    """Make :func:`optimize` dask's array optimisation, unless one is already set (by the
    user, or earlier by this function). Idempotent; cheap after the first call."""
    import dask

    if "array_optimize" in dask.config.config:
        return
    with _install_lock:
        if "array_optimize" not in dask.config.config:
            dask.config.set(array_optimize=optimize)


def optimize(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    """dask's ``array_optimize``: the one-region graph of :func:`fused_graph` when there is
    one, else ``dask.array.optimization.optimize(dsk, keys, **kwargs)``."""
    fused = fused_graph(dsk, keys) if direct_read_enabled() else None
    if fused is not None:
        return fused
    from dask.array.optimization import optimize as dask_optimize

    return dask_optimize(dsk, keys, **kwargs)


def fused_graph(dsk: Any, keys: Any) -> dict[Any, Any] | None:
    """A low-level graph computing ``keys`` with one region read per output array, or None
    when some output is not a slice chain over one reader (or is over :data:`FUSE_MAX_BYTES`).

    ``keys`` are the output array's blocks (``persist``), or, for ``compute``, the key of
    dask's finalize task that gathers them. The blocks are planned; a finalize task that only
    concatenates one array's blocks (``dask.array``'s own) becomes the read itself, any other
    is kept as it is, over one task per block.
    """
    from dask.array.core import finalize

    layers = getattr(dsk, "layers", None)
    if layers is None or not any(_is_tlcore_layer(layer) for layer in layers.values()):
        return None  # not ours: costs one look per layer
    finals: dict[Any, tuple[Any, str | None]] = {}  # key: (task, the one array it concatenates)
    by_name: dict[str, set[tuple[int, ...]]] = {}
    wanted: set[str] = set()  # arrays whose blocks are asked for themselves
    for key in _flat(keys):
        if _is_block(key):
            by_name.setdefault(key[0], set()).add(tuple(key[1:]))
            wanted.add(key[0])
            continue
        task = _finalize_task(dsk, key)
        dependencies = getattr(task, "dependencies", None)
        if task is None or not dependencies or not all(_is_block(d) for d in dependencies):
            return None
        names = {dep[0] for dep in dependencies}
        concatenates = getattr(task, "func", None) is finalize and len(names) == 1
        finals[key] = (task, next(iter(names)) if concatenates else None)
        wanted.update(() if concatenates else names)
        for dep in dependencies:
            by_name.setdefault(dep[0], set()).add(tuple(dep[1:]))
    if not by_name or sum(len(b) for b in by_name.values()) > FUSE_MAX_BLOCKS:
        return None
    regions: dict[str, RegionRead] = {}
    graph: dict[Any, Any] = {}
    for name, blocks in by_name.items():
        found = region_of_blocks(dsk, name, blocks)
        if found is None:
            return None
        regions[name], chunks = found
        if _region_bytes(regions[name]) > FUSE_MAX_BYTES:
            return None
        if name in wanted:
            graph.update(_tasks(name, regions[name], chunks))
    for key, (task, whole) in finals.items():
        # dask's finalize of every block is the whole array: read it, a fresh copy as dask's
        graph[key] = task if whole is None else (ReadRegion(regions[whole], fresh=True),)
    return graph


def _is_tlcore_layer(layer: Any) -> bool:
    """Whether ``layer`` is the chunks of :func:`as_dask` (or of a ReaderView's ``to_dask``)."""
    indices: Any = getattr(layer, "indices", None)
    return bool(indices) and isinstance(indices[0][0], (ArrayReader, ReaderView))


def _is_block(key: Any) -> bool:
    return (
        isinstance(key, tuple)
        and bool(key)
        and isinstance(key[0], str)
        and all(isinstance(i, int) for i in key[1:])
    )


def _finalize_task(dsk: Any, key: Any) -> Any:
    """The task of ``key`` when it sits alone in its own layer (dask's finalize step of a
    ``compute``), else None."""
    if not isinstance(key, str):
        return None
    layer = dsk.layers.get(key)
    mapping = getattr(layer, "mapping", None)
    if mapping is None or len(mapping) != 1 or key not in mapping:
        return None
    return mapping[key]


def _flat(keys: Any) -> Iterator[Any]:
    if isinstance(keys, list):
        for k in keys:
            yield from _flat(k)
    else:
        yield keys


def _region_bytes(region: RegionRead) -> int:
    itemsize = int(region.reader.dtype.itemsize)
    return int(sum(math.prod(s.stop - s.start for s in r) for r in region.regions) * itemsize)


class ReadRegion:
    """A task: ``region.read()`` (picklable; the reader reopens its file where it runs).
    ``fresh``: an array that owns its memory (a copy when the read gave a view), as dask's
    finalize hands out, so that writing to it never reaches a reader's buffers."""

    def __init__(self, region: RegionRead, fresh: bool = False) -> None:
        self.region = region
        self.fresh = fresh

    def __call__(self) -> np.ndarray:
        out = self.region.read()
        return out.copy() if self.fresh and not out.flags.owndata else out

    def __repr__(self) -> str:
        return f"ReadRegion({self.region.reader!r}, {self.region.regions!r})"


class TakeBlock:
    """A task: one output block of the array a :class:`ReadRegion` read (a view of it)."""

    def __init__(self, index: tuple[slice, ...]) -> None:
        self.index = index

    def __call__(self, whole: np.ndarray) -> np.ndarray:
        return whole[self.index]

    def __repr__(self) -> str:
        return f"TakeBlock({self.index!r})"


def _tasks(name: str, region: RegionRead, chunks: tuple[tuple[int, ...], ...]) -> dict[Any, Any]:
    """Legacy-format tasks (dask's documented graph spec): the read, then each block."""
    blocks = math.prod(len(c) for c in chunks)
    if blocks == 1:
        return {(name, *(0,) * len(chunks)): (ReadRegion(region),)}
    read_key = f"tlcore-read-{name}"
    graph: dict[Any, Any] = {read_key: (ReadRegion(region),)}
    starts = [np.concatenate([[0], np.cumsum(c)]).tolist() for c in chunks]
    for block in np.ndindex(*(len(c) for c in chunks)):
        index = tuple(slice(int(s[b]), int(s[b + 1])) for s, b in zip(starts, block))
        graph[(name, *block)] = (TakeBlock(index), read_key)
    return graph
