"""What to read for a selection of a reader's array, and one sample's view of that array.

Two pieces that :mod:`tlcore.lazy.compute` and :class:`tlcore.LoadLazyd` share:

* :func:`plan`: per-axis selections of an :class:`~tlcore.lazy.reader.ArrayReader`'s TCZYX array (an
  integer, a contiguous range, or any list of positions) -> a :class:`RegionRead`: the few
  contiguous regions to read (one, unless whole storage chunks lie unselected between two
  selected positions, which are then not decoded), how to place them side by side, and the
  numpy selection that gives exactly ``array[selection]``.
* :class:`ReaderView`: one sample's channel-first array over a reader (its timepoint(s), its
  channels, Z kept or dropped, an optional dtype) as a numpy-style object that dask wraps with
  one chunk grid and no indexing layer over the whole timepoint. Several timepoints are folded
  into the channel axis, time-major, as :class:`tlcore.LoadLazyd` documents.

Neither imports dask or touches a file until asked to read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcore.lazy.reader import ArrayReader, Region, dask_window, expand_index

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["NotAProduct", "ReaderView", "RegionRead", "Selection", "plan"]

#: One axis's selection: a fixed index (the axis is dropped), a range, or positions in order
#: (repeats and any order allowed, as numpy's integer-array indexing).
Selection = int | range | np.ndarray


class NotAProduct(ValueError):
    """A selection of a folded (time x channel) axis that is not every chosen channel at every
    chosen timepoint: it has no one-region read (dask computes it block by block instead)."""


@dataclass(frozen=True)
class RegionRead:
    """The reads that give a selection's pixels.

    Each of ``regions`` is read through ``reader`` (one :meth:`ArrayReader.read` each) into
    ``buffer`` at its ``places`` entry (directly, without a copy, when there is one region);
    then ``post`` (a basic index: ints drop axes, slices keep steps and order) and each
    ``(axis, indices)`` of ``takes`` (``numpy.take``, for lists that are not slices) select
    from it; the result is reshaped to ``shape`` (a folded time x channel axis) and cast to
    ``dtype``.
    """

    reader: ArrayReader
    #: TCZYX boxes (five step-1 slices) to read: usually one.
    regions: tuple[Region, ...]
    #: Where each region goes in the buffer (five slices), in the order of ``regions``.
    places: tuple[Region, ...]
    buffer_shape: tuple[int, ...]
    post: tuple[int | slice, ...]
    takes: tuple[tuple[int, np.ndarray], ...]
    #: The shape of the result.
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def read(self, handle: Any = None) -> np.ndarray:
        """The pixels: the reads, then the selection. ``handle``: another open handle of the
        same stored array for :meth:`ArrayReader.read` (None: the decoder it picks)."""
        if len(self.regions) == 1:
            out = self.reader.read(self.regions[0], handle)
        else:
            out = np.empty(self.buffer_shape, dtype=self.reader.dtype)
            for region, place in zip(self.regions, self.places):
                out[place] = self.reader.read(region, handle)
        if any(p != slice(None) for p in self.post):
            out = out[self.post]
        for axis, indices in self.takes:
            out = np.take(out, indices, axis=axis)
        if out.shape != self.shape:
            out = out.reshape(self.shape)
        if out.dtype != self.dtype:
            out = out.astype(self.dtype)
        return out


def plan(
    reader: ArrayReader,
    axes: Sequence[Selection],
    shape: Sequence[int] | None = None,
    dtype: Any = None,
) -> RegionRead:
    """The :class:`RegionRead` giving ``reader``'s TCZYX array indexed by ``axes`` (one
    :data:`Selection` per axis, applied as numpy's outer indexing: a list on one axis does not
    pair with a list on another), reshaped to ``shape`` and cast to ``dtype`` when given.

    Positions are checked against the array's shape (``IndexError``). Along each axis the read
    spans the selection's bounding box, cut into separate runs where whole storage chunks lie
    unselected between selected positions (channels ``[0, 9]`` do not decode channels 1-8).
    """
    if len(axes) != reader.ndim:
        raise ValueError(f"{reader!r}: {len(axes)} selections for {reader.ndim} axes")
    runs_per_axis: list[list[slice]] = []
    offsets_per_axis: list[list[int]] = []
    post: list[int | slice] = []
    takes: list[tuple[int, np.ndarray]] = []
    out_shape: list[int] = []
    out_axis = 0
    for axis, (sel, n, chunk) in enumerate(zip(axes, reader.shape, reader.chunks)):
        if isinstance(sel, (int, np.integer)):
            i = int(sel)
            if not 0 <= i < n:
                raise IndexError(f"{reader!r}: index {i} out of range for axis {axis} ({n})")
            runs_per_axis.append([slice(i, i + 1)])
            offsets_per_axis.append([0])
            post.append(0)
            continue
        if isinstance(sel, range) and sel.step == 1 and len(sel):
            if sel.start < 0 or sel.stop > n:
                raise IndexError(f"{reader!r}: {sel} out of range for axis {axis} ({n})")
            runs_per_axis.append([slice(sel.start, sel.stop)])
            offsets_per_axis.append([0])
            post.append(slice(None))
            out_shape.append(len(sel))
            out_axis += 1
            continue
        positions = np.asarray(sel, dtype=np.int64).reshape(-1)
        if positions.size == 0:
            raise IndexError(f"{reader!r}: an empty selection on axis {axis}")
        if int(positions.min()) < 0 or int(positions.max()) >= n:
            raise IndexError(f"{reader!r}: positions out of range for axis {axis} ({n})")
        runs = _runs(positions, chunk)
        starts = np.array([r.start for r in runs])
        offsets = np.cumsum([0] + [r.stop - r.start for r in runs[:-1]])
        where = np.searchsorted(starts, positions, side="right") - 1
        local = positions - starts[where] + offsets[where]
        length = sum(r.stop - r.start for r in runs)
        runs_per_axis.append(runs)
        offsets_per_axis.append([int(o) for o in offsets])
        as_slice = _as_slice(local, length)
        if as_slice is None:
            post.append(slice(None))
            takes.append((out_axis, local))
        else:
            post.append(as_slice)
        out_shape.append(len(positions))
        out_axis += 1
    regions: list[Region] = []
    places: list[Region] = []
    for combo in itertools.product(*(range(len(r)) for r in runs_per_axis)):
        box = tuple(runs_per_axis[a][i] for a, i in enumerate(combo))
        place = tuple(
            slice(offsets_per_axis[a][i], offsets_per_axis[a][i] + (b.stop - b.start))
            for a, (i, b) in enumerate(zip(combo, box))
        )
        regions.append(_region(box))
        places.append(_region(place))
    buffer_shape = tuple(
        sum(r.stop - r.start for r in runs) if len(runs) > 1 else runs[0].stop - runs[0].start
        for runs in runs_per_axis
    )
    final = tuple(int(n) for n in shape) if shape is not None else tuple(out_shape)
    if math.prod(final) != math.prod(out_shape):
        raise ValueError(f"{reader!r}: cannot reshape a selection of {out_shape} to {final}")
    return RegionRead(
        reader=reader,
        regions=tuple(regions),
        places=tuple(places),
        buffer_shape=buffer_shape,
        post=tuple(post),
        takes=tuple(takes),
        shape=final,
        dtype=np.dtype(dtype) if dtype is not None else reader.dtype,
    )


def _region(slices: Sequence[slice]) -> Region:
    return (slices[0], slices[1], slices[2], slices[3], slices[4])


def _runs(selected: np.ndarray, chunk: int) -> list[slice]:
    """The ranges to read along one axis: the bounding box of ``selected``, cut where whole
    storage chunks lie unselected between two selected positions."""
    ordered = np.unique(selected)
    touched = ordered // chunk
    cuts = np.nonzero(np.diff(touched) > 1)[0] + 1
    return [slice(int(g[0]), int(g[-1]) + 1) for g in np.split(ordered, cuts)]


def _as_slice(positions: np.ndarray, length: int) -> slice | None:
    """``positions`` (into an axis of ``length``) as a slice, or None when no slice gives
    them (unordered, repeated, uneven steps)."""
    first, last = int(positions[0]), int(positions[-1])
    if len(positions) == 1:
        return slice(None) if length == 1 else slice(first, first + 1)
    steps = np.diff(positions)
    step = int(steps[0])
    if step == 0 or not bool(np.all(steps == step)):
        return None
    if step == 1 and first == 0 and last == length - 1:
        return slice(None)
    return slice(first, last + 1 if step > 0 else (last - 1 if last > 0 else None), step)


# -- one sample's view ------------------------------------------------------------------------
class ReaderView:
    """One sample's channel-first pixels over a reader's TCZYX array: ``C, Z, Y, X`` (or
    ``C, Y, X`` with ``drop_z``) at one timepoint, or with several timepoints folded into the
    channel axis time-major (``t0c0, t0c1, t1c0, ...``), in ``dtype`` (the reader's by
    default; other dtypes are cast after reading).

    It indexes like a numpy array (ints and slices: what dask's ``from_array`` getter asks)
    and reads through :func:`plan`, so :func:`to_dask` gives a dask array whose crops
    :func:`tlcore.lazy.compute.compute` reads as one region, whatever the number of chunks in the
    timepoint. Picklable: the reader drops its open handle.
    """

    def __init__(
        self,
        reader: ArrayReader,
        timepoints: int | Sequence[int],
        channels: Sequence[int] | None = None,
        *,
        drop_z: bool = False,
        dtype: Any = None,
        chunks: Sequence[Sequence[int]] | None = None,
    ) -> None:
        n_t, n_c, n_z = reader.shape[:3]
        self.reader = reader
        self.folded = isinstance(timepoints, Sequence)
        ts = [int(t) for t in timepoints] if isinstance(timepoints, Sequence) else [int(timepoints)]
        if not ts or any(not 0 <= t < n_t for t in ts):
            raise IndexError(f"{reader!r}: timepoints {ts} out of range (T={n_t})")
        cs = list(range(n_c)) if channels is None else [int(c) for c in channels]
        if not cs or any(not 0 <= c < n_c for c in cs):
            raise IndexError(f"{reader!r}: channels {cs} out of range (C={n_c})")
        if drop_z and n_z != 1:
            raise ValueError(f"{reader!r}: cannot drop Z of size {n_z}")
        self.timepoints = tuple(ts)
        self.channels = tuple(cs)
        self.drop_z = drop_z
        self.dtype = np.dtype(dtype) if dtype is not None else reader.dtype
        n_out = len(ts) * len(cs) if self.folded else len(cs)
        spatial = reader.shape[3:] if drop_z else reader.shape[2:]
        self.shape: tuple[int, ...] = (n_out, *spatial)
        self.ndim = len(self.shape)
        base = [tuple(c) for c in chunks] if chunks is not None else _regular(reader)
        self.chunks = self._chunk_grid(base)

    def _chunk_grid(self, base: list[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
        """Dask chunks following the storage: selected channels grouped by the storage chunk
        they sit in (consecutive ones only), repeated per folded timepoint; spatial as stored."""
        bounds = np.cumsum(base[1])
        groups: list[int] = []
        previous: tuple[int, int] | None = None  # (storage chunk, channel) of the last one
        for c in self.channels:
            chunk = int(np.searchsorted(bounds, c, side="right"))
            if previous is not None and previous == (chunk, c - 1):
                groups[-1] += 1
            else:
                groups.append(1)
            previous = (chunk, c)
        first = tuple(groups) * (len(self.timepoints) if self.folded else 1)
        spatial = base[3:] if self.drop_z else base[2:]
        return (first, *spatial)

    # -- selections ----------------------------------------------------------------------------
    def base_selection(self, axes: Sequence[Selection]) -> list[Selection]:
        """This view's per-axis selections as selections of the reader's TCZYX axes (the
        result's axes, in order, are the view's: a folded axis becomes T then C, to be
        reshaped). :class:`NotAProduct` when a folded selection is not a time x channel
        product."""
        if len(axes) != self.ndim:
            raise ValueError(f"{len(axes)} selections for a {self.ndim}-D view")
        first, *spatial = axes
        if self.folded:
            t_sel, c_sel = self._unfold(first)
        else:
            t_sel, c_sel = self.timepoints[0], _through(first, self.channels)
        z_sel: list[Selection] = [0] if self.drop_z else []
        return [t_sel, c_sel, *z_sel, *spatial]

    def _unfold(self, sel: Selection) -> tuple[Selection, Selection]:
        n_c = len(self.channels)
        if isinstance(sel, (int, np.integer)):
            t, c = divmod(int(sel), n_c)
            return self.timepoints[t], self.channels[c]
        folded = np.asarray(sel, dtype=np.int64).reshape(-1)
        ti, ci = np.divmod(folded, n_c)
        run = int(np.argmax(ti != ti[0])) if bool(np.any(ti != ti[0])) else len(ti)
        if len(ti) % run:
            raise NotAProduct(f"folded selection {folded.tolist()} is not time x channel")
        t_idx, c_idx = ti[::run], ci[:run]
        if not (
            np.array_equal(ti, np.repeat(t_idx, run))
            and np.array_equal(ci, np.tile(c_idx, len(t_idx)))
        ):
            raise NotAProduct(f"folded selection {folded.tolist()} is not time x channel")
        return (
            _through(_compact(t_idx), self.timepoints),
            _through(_compact(c_idx), self.channels),
        )

    def plan(self, axes: Sequence[Selection], shape: Sequence[int]) -> RegionRead:
        """The reads for this view indexed by ``axes`` (view axes), giving ``shape``."""
        return plan(self.reader, self.base_selection(axes), shape, self.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        axes, shape = _basic_selections(key, self.shape)
        try:
            return self.plan(axes, shape).read()
        except NotAProduct:
            # Timepoint by timepoint: each is a product (one timepoint, its channels).
            if not isinstance(key, tuple):
                key = (key,)
            positions = np.arange(self.shape[0])[key[0]] if key else np.arange(self.shape[0])
            rest = key[1:]
            parts = [self[(int(p), *rest)] for p in np.atleast_1d(positions)]
            return np.stack(parts) if np.ndim(positions) else parts[0]

    def to_dask(self) -> da.Array:
        """This view as a dask array (nothing read), chunked like the storage; a plain
        ``.compute()`` of a crop of it is one region read where :func:`tlcore.lazy.as_dask`
        has run in the process (it installs :mod:`tlcore.lazy.daskarray`'s optimisation)."""
        from dask.base import tokenize

        return dask_window(self, self.chunks, f"tlcore-view-{tokenize(self)}")

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (
            "ReaderView",
            self.reader.__dask_tokenize__(),
            self.timepoints,
            self.folded,
            self.channels,
            self.drop_z,
            str(self.dtype),
            self.chunks,
        )

    def __repr__(self) -> str:
        t = list(self.timepoints) if self.folded else self.timepoints[0]
        return (
            f"ReaderView({self.reader!r}, T={t}, C={list(self.channels)}, "
            f"shape={self.shape}, dtype={self.dtype})"
        )


def _regular(reader: ArrayReader) -> list[tuple[int, ...]]:
    return [
        tuple(min(c, n - i) for i in range(0, n, c)) if n else (0,)
        for n, c in zip(reader.shape, reader.chunks)
    ]


def _compact(indices: np.ndarray) -> Selection:
    """Indices as a range when they are consecutive and increasing (the common case)."""
    if len(indices) and bool(np.all(np.diff(indices) == 1)):
        return range(int(indices[0]), int(indices[-1]) + 1)
    return indices


def _through(sel: Selection, mapping: tuple[int, ...]) -> Selection:
    """``sel`` (positions in a view axis) as positions in the reader's axis via ``mapping``."""
    if isinstance(sel, (int, np.integer)):
        return mapping[int(sel)]
    lo = mapping[0]
    identity = mapping == tuple(range(lo, lo + len(mapping)))
    if isinstance(sel, range):
        if identity:
            return range(sel.start + lo, sel.stop + lo, sel.step)
        return np.asarray(mapping, dtype=np.int64)[np.asarray(sel, dtype=np.int64)]
    chosen = np.asarray(sel, dtype=np.int64)
    return chosen + lo if identity else np.asarray(mapping, dtype=np.int64)[chosen]


def _basic_selections(key: Any, shape: tuple[int, ...]) -> tuple[list[Selection], list[int]]:
    """A basic numpy index (ints, slices, Ellipsis) -> one :data:`Selection` per axis and the
    result's shape."""
    axes: list[Selection] = []
    out: list[int] = []
    for k, n in zip(expand_index(key, len(shape)), shape):
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} out of range for axis of size {n}")
            axes.append(i)
        elif isinstance(k, slice):
            r = range(n)[k]
            if not len(r):
                raise IndexError(f"empty selection {k} of an axis of size {n}")
            axes.append(r)
            out.append(len(r))
        else:
            raise IndexError(f"ReaderView supports ints and slices only, got {k!r}")
    return axes, out
