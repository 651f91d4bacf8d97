"""Turning a lazy value into pixels: the one place :class:`tlcore.ComputeDaskd` (and users
outside MONAI) compute a dask array.

The fast path: a dask array that is a chain of indexing steps (basic slices, integers, one
channel list per step) over a single :func:`tlcore.lazy.as_dask` array, or over one sample's
:class:`tlcore.lazy.regions.ReaderView` (what :class:`tlcore.LoadLazyd` builds), is read as *one*
region through the plugin's :class:`~tlcore.lazy.reader.ArrayReader`, instead of one dask task per
storage chunk. The reader then decodes every touched chunk in one call (for local zarr
arrays tlcore's own decoder does, on a few threads, see :mod:`tlcore.decoders`), and the
per-crop cost does not depend on how many chunks the array has. A
:class:`tlcore.lazy.array.LazyArray` knows its selection of the loader's view, so it is planned
without looking at the graph at all. Anything else (arithmetic, ``astype``, concatenations,
arrays not built by ``as_dask``) is computed by dask, exactly as before.

    region = find_region(lazy)      # RegionRead, or None when dask must compute it
    pixels = compute(lazy)          # the same pixels either way

Set ``TLCORE_DIRECT_READ=0`` in the environment to turn the fast path off (to compare, or to
rule it out when a result looks wrong).
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from tlcore.lazy.reader import ArrayReader, expand_index
from tlcore.lazy.regions import NotAProduct, ReaderView, RegionRead, Selection, plan

__all__ = ["RegionRead", "compute", "direct_read_enabled", "find_region", "region_of_blocks"]

#: Environment switch: "0", "false", "no" or "off" computes everything through dask.
DIRECT_READ_ENV = "TLCORE_DIRECT_READ"


def direct_read_enabled() -> bool:
    """Whether :func:`compute` may read a slice chain as one region (``TLCORE_DIRECT_READ``)."""
    return os.environ.get(DIRECT_READ_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def compute(value: Any, scheduler: str | None = None, *, direct: bool | None = None) -> np.ndarray:
    """Compute ``value`` (a dask array, or anything array-like) into a numpy array.

    A slice chain over one ``as_dask`` array is read as one region (see :func:`find_region`);
    the pixels are identical to dask's. Everything else goes to dask with ``scheduler``
    (``"synchronous"``, ``"threads"``; None uses dask's default). ``direct=False`` forces dask;
    None follows ``TLCORE_DIRECT_READ`` (on unless set to ``0``).
    """
    if hasattr(value, "dask") and hasattr(value, "compute"):
        if direct if direct is not None else direct_read_enabled():
            # A LazyArray knows its selection of the loader's view: no graph to replay.
            known = getattr(value, "region", None)
            region = known() if callable(known) else None
            region = region if region is not None else find_region(value)
            if region is not None:
                return region.read()
        value = value.compute(scheduler=scheduler) if scheduler else value.compute()
    return np.asarray(value)


class _NotARegion(Exception):
    """The graph is not a slice chain over one reader: let dask compute it."""


class _Positions:
    """Stands in for a base chunk while the graph's indexing tasks are replayed: each axis of
    the base array is a fixed integer or the base positions still selected (a ``range``, or a
    tuple after a channel list). Indexing it composes the selections exactly as numpy would
    index the pixels; ranges keep that O(1) per step, whatever the crop size."""

    class _Flags:
        owndata = True  # dask's chunk.getitem asks before it copies a view

    flags = _Flags()

    def __init__(self, axes: list[int | range | tuple[int, ...]]) -> None:
        self.axes = axes
        self.ndim = sum(1 for a in axes if not isinstance(a, int))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes if not isinstance(a, int))

    def __getitem__(self, index: Any) -> _Positions:
        try:
            index = expand_index(index, self.ndim)
        except IndexError:
            raise _NotARegion from None
        fancy = 0
        keys = iter(index)
        axes: list[int | range | tuple[int, ...]] = []
        for axis in self.axes:
            if isinstance(axis, int):
                axes.append(axis)
                continue
            key = next(keys)
            if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
                axes.append(int(axis[int(key)]))  # IndexError out of bounds, like numpy
            elif isinstance(key, slice):
                axes.append(axis[key])
            elif isinstance(key, (list, np.ndarray)):
                selected = np.asarray(key)
                # One integer list per step keeps numpy's outer-indexing semantics simple.
                if selected.ndim != 1 or selected.dtype.kind not in "iu" or fancy:
                    raise _NotARegion
                fancy += 1
                axes.append(tuple(int(axis[int(i)]) for i in selected))
            else:  # None (new axis), booleans, anything unknown
                raise _NotARegion
        return _Positions(axes)


def _base_layer(graph: Any) -> tuple[str, ArrayReader | ReaderView, Any]:
    """The single ``as_dask`` (or :meth:`ReaderView.to_dask`) layer of ``graph``: its name,
    its reader or view, and its block slices."""
    from dask.blockwise import Blockwise

    found = []
    for name, layer in graph.layers.items():
        if isinstance(layer, Blockwise):
            reader = layer.indices[0][0] if layer.indices else None
            if not isinstance(reader, (ArrayReader, ReaderView)) or len(layer.io_deps) != 1:
                raise _NotARegion  # arithmetic, astype, from_array of something else
            found.append((name, reader, next(iter(layer.io_deps.values()))))
        elif not hasattr(layer, "mapping"):
            raise _NotARegion
    if len(found) != 1:
        raise _NotARegion
    return found[0]


def _indexing_functions() -> tuple[Any, ...]:
    from dask.array import chunk

    functions: list[Any] = [chunk.getitem, operator.getitem]
    try:
        from dask.array import _shuffle  # channel lists (``x[:, [0, 2]]``) go through it

        functions.append(_shuffle._getitem)
    except (ImportError, AttributeError):
        pass
    return tuple(functions)


class _Replay:
    """Evaluates the indexing tasks above the base layer with :class:`_Positions` values."""

    def __init__(
        self, graph: Any, base: str, reader: ArrayReader | ReaderView, slices: Any
    ) -> None:
        from dask._task_spec import Alias, DataNode, Task

        self.graph = graph
        self.base = base
        self.reader = reader
        self.slices = slices
        self.memo: dict[Any, Any] = {}
        self.alias, self.data, self.task = Alias, DataNode, Task
        self.allowed = _indexing_functions()

    def _layer_of(self, key: Any) -> Any:
        name = key[0] if isinstance(key, tuple) else key
        layer = self.graph.layers.get(name)
        if layer is not None:
            return layer
        for layer in self.graph.layers.values():  # keys that are not named after their layer
            if hasattr(layer, "mapping") and key in layer.mapping:
                return layer
        raise _NotARegion

    def value(self, key: Any) -> Any:
        if key in self.memo:
            return self.memo[key]
        if isinstance(key, tuple) and key[0] == self.base:
            box = self.slices[tuple(key[1:])]
            out: Any = _Positions([range(s.start, s.stop) for s in box])
        else:
            mapping = getattr(self._layer_of(key), "mapping", None)
            if mapping is None or key not in mapping:
                raise _NotARegion
            out = self._evaluate(mapping[key])
        self.memo[key] = out
        return out

    def _evaluate(self, node: Any) -> Any:
        if isinstance(node, self.alias):
            return self.value(node.target)
        if isinstance(node, self.data):
            return node({})
        if isinstance(node, self.task):
            if node.func not in self.allowed or node.kwargs:
                raise _NotARegion
            return node({dep: self.value(dep) for dep in node.dependencies})
        if isinstance(node, tuple) and node and isinstance(node[0], str):
            return self.value(node)  # an old-style alias: a bare key
        raise _NotARegion


def find_region(value: Any) -> RegionRead | None:
    """The single :class:`~tlcore.lazy.reader.ArrayReader` region behind ``value``, or None.

    ``value`` qualifies when it is a dask array made of indexing steps (slices, integers, one
    integer list per step, as :class:`tlcore.LoadLazyd`, the crops and MONAI's spatial crops
    produce) over one array from :func:`tlcore.lazy.as_dask`. The region is the bounding box
    of what the chunks of ``value`` select; the answer is checked against ``value``'s own
    chunk grid, so a graph this function misreads yields None, not wrong pixels. Costs only
    the chunks ``value`` touches, never the chunk count of the whole array.
    """
    try:
        return _plan(value)
    except _NotARegion:
        return None
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return None  # an unexpected graph shape: dask knows how to compute it


def _plan(value: Any) -> RegionRead:
    graph = value.__dask_graph__()
    if not hasattr(graph, "layers") or any(n == 0 for n in value.shape):
        raise _NotARegion
    if any(np.isnan(c) for dim in value.chunks for c in dim):
        raise _NotARegion
    blocks = itertools.product(*(range(len(c)) for c in value.chunks))
    region, chunks = _plan_blocks(graph, value.name, blocks)
    # The replay's block sizes against the array's own chunk grid: a graph misread here
    # gives None (dask computes it), never wrong pixels.
    if chunks != tuple(tuple(int(n) for n in c) for c in value.chunks):
        raise _NotARegion
    if np.dtype(value.dtype) != region.dtype:
        raise _NotARegion
    return region


def region_of_blocks(
    graph: Any, name: str, blocks: Iterable[tuple[int, ...]]
) -> tuple[RegionRead, tuple[tuple[int, ...], ...]] | None:
    """The one-region read giving the blocks ``blocks`` of the dask array ``name`` in
    ``graph``, with the chunk sizes those blocks have, or None.

    What :func:`find_region` does for an array, for a graph and its output keys (what a dask
    optimisation receives, see :mod:`tlcore.lazy.daskarray`): None unless the blocks are every
    block of a slice chain over one :func:`~tlcore.lazy.daskarray.as_dask` array (or
    :class:`~tlcore.lazy.regions.ReaderView`), and together select a non-empty product of
    per-axis positions.
    """
    try:
        return _plan_blocks(graph, name, blocks)
    except _NotARegion:
        return None
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        return None  # an unexpected graph shape: dask knows how to compute it


def _plan_blocks(
    graph: Any, name: str, blocks: Iterable[tuple[int, ...]]
) -> tuple[RegionRead, tuple[tuple[int, ...], ...]]:
    if not hasattr(graph, "layers"):
        raise _NotARegion
    base, reader, slices = _base_layer(graph)
    replay = _Replay(graph, base, reader, slices)
    kinds: list[bool] | None = None  # per base axis: True when fixed to one integer
    fixed: list[int | None] = []
    pieces: list[dict[int, range | tuple[int, ...]]] = []
    seen = 0
    for block in set(blocks):
        seen += 1
        positions = replay.value((name, *block))
        if not isinstance(positions, _Positions) or len(positions.axes) != reader.ndim:
            raise _NotARegion
        these = [isinstance(a, int) for a in positions.axes]
        ints = [a if isinstance(a, int) else None for a in positions.axes]
        if kinds is None:
            kinds, fixed = these, ints
            pieces = [{} for _ in block]
        elif these != kinds or ints != fixed:
            raise _NotARegion  # e.g. several timepoints concatenated
        arrays = [a for a in positions.axes if not isinstance(a, int)]
        if len(arrays) != len(block) or len(block) != len(pieces):
            raise _NotARegion
        for k, (b, chosen) in enumerate(zip(block, arrays)):
            if pieces[k].setdefault(b, chosen) != chosen:
                raise _NotARegion  # not a product of per-axis selections
    if kinds is None:
        raise _NotARegion
    # Every block of the grid, each axis's blocks numbered 0..n-1: the whole array.
    if any(sorted(p) != list(range(len(p))) for p in pieces):
        raise _NotARegion
    if seen != math.prod(len(p) for p in pieces):
        raise _NotARegion
    chunks = tuple(tuple(len(p[b]) for b in range(len(p))) for p in pieces)
    shape = tuple(sum(c) for c in chunks)
    if any(n == 0 for n in shape):
        raise _NotARegion
    joined = iter([_joined([p[b] for b in range(len(p))]) for p in pieces])
    axes: list[Selection] = [at if is_int and at is not None else next(joined)
                             for is_int, at in zip(kinds, fixed)]  # fmt: skip
    if isinstance(reader, ReaderView):
        try:
            return reader.plan(axes, shape), chunks
        except NotAProduct:
            raise _NotARegion from None
    return plan(reader, axes, shape), chunks


def _joined(pieces: list[range | tuple[int, ...]]) -> range | np.ndarray:
    """One axis's selections, chunk after chunk: a step-1 range when they are consecutive
    step-1 ranges (a crop), else the array of positions."""
    ranges = [p for p in pieces if isinstance(p, range) and p.step == 1]
    if len(ranges) == len(pieces) and all(a[-1] + 1 == b[0] for a, b in itertools.pairwise(ranges)):
        return range(ranges[0][0], ranges[-1][-1] + 1)
    return np.concatenate([np.asarray(p) for p in pieces])
