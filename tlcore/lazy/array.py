"""A dask array that remembers where it sits in the image it was loaded from.

:class:`tlcore.LoadLazyd` hands out a :class:`LazyArray`. Slicing it (``x[:, 4:20, 0:64]``, what
tlcore's and MONAI's spatial crops do) returns another :class:`LazyArray` whose ``origin`` is
shifted by the slice starts, so :class:`tlcore.ComputeDaskd` knows the crop box whichever
transform chose it, without reading a pixel. Any other operation (``astype``, arithmetic,
fancy indexing, integer indexing of a spatial axis) returns a plain dask array: the box is then
unknown and reported as such, never guessed.

When the loader built the array on a :class:`tlcore.lazy.regions.ReaderView` (every reader built on
:class:`tlcore.lazy.reader.ArrayReader`), the array also carries its selection of that view, so
:meth:`LazyArray.region` gives the one-region read of a crop at once, without replaying the
dask graph (:func:`tlcore.lazy.compute.compute` uses it).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from dask.array.slicing import normalize_index

from tlcore.lazy.regions import NotAProduct, ReaderView, RegionRead

__all__ = ["LazyArray", "track"]

#: Per view axis: the view positions still selected (a range; a tuple after a channel list).
ViewSelection = tuple[range | tuple[int, ...], ...]


class LazyArray(da.Array):  # type: ignore[misc]
    """A channel-first (C, Z, Y, X or C, Y, X) dask array with its place in the loaded image.

    Attributes:
        origin: start of this array's spatial axes in the loader's output (the level's grid).
        full_shape: spatial shape of the loader's output (the whole timepoint at that level).
        source_itemsize: bytes per pixel as stored (what a compute decodes, before any cast).
        view: the :class:`~tlcore.lazy.regions.ReaderView` the loader built it on, or None.
        selection: this array's positions in ``view``, per axis (None without a view).
    """

    origin: tuple[int, ...]
    full_shape: tuple[int, ...]
    source_itemsize: int
    view: ReaderView | None
    selection: ViewSelection | None
    _tracked_name: str

    def __getitem__(self, index: Any) -> Any:
        out = super().__getitem__(index)
        normalized = _normalized(self, index)
        origin = _shifted_origin(self, normalized)
        if origin is None or not isinstance(out, da.Array) or out.ndim != self.ndim:
            return out
        selection = _composed(self, normalized)
        return track(
            out,
            origin,
            self.full_shape,
            self.source_itemsize,
            view=self.view if selection is not None else None,
            selection=selection,
        )

    @property
    def is_whole(self) -> bool:
        """True when no spatial crop has been applied since loading."""
        return all(o == 0 for o in self.origin) and tuple(self.shape[1:]) == self.full_shape

    def region(self) -> RegionRead | None:
        """The one-region read that gives this array's pixels (see :mod:`tlcore.lazy.regions`),
        or None when the array does not know it (no view; a graph changed since tracking)."""
        view, selection = getattr(self, "view", None), getattr(self, "selection", None)
        if view is None or selection is None or self.name != self._tracked_name:
            return None
        axes = [s if isinstance(s, range) else np.asarray(s, dtype=np.int64) for s in selection]
        try:
            found = view.plan(axes, tuple(int(n) for n in self.shape))
        except NotAProduct:
            return None
        return found if found.dtype == self.dtype else None


def track(
    array: da.Array,
    origin: tuple[int, ...] | None = None,
    full_shape: tuple[int, ...] | None = None,
    source_itemsize: int | None = None,
    *,
    view: ReaderView | None = None,
    selection: ViewSelection | None = None,
) -> LazyArray:
    """``array`` as a :class:`LazyArray` (same graph, nothing computed); by default it is the
    whole image: origin 0, full shape its own spatial shape. With ``view`` (the
    :class:`~tlcore.lazy.regions.ReaderView` ``array`` was built on), ``selection`` defaults to the
    whole view."""
    out = LazyArray(array.dask, array.name, array.chunks, meta=array._meta)
    spatial = tuple(int(n) for n in array.shape[1:])
    out.origin = tuple(origin) if origin is not None else (0,) * len(spatial)
    out.full_shape = tuple(full_shape) if full_shape is not None else spatial
    out.source_itemsize = int(source_itemsize or array.dtype.itemsize)
    if view is not None and selection is None:
        selection = tuple(range(int(n)) for n in view.shape)
    out.view = view if selection is not None else None
    out.selection = selection if view is not None else None
    out._tracked_name = out.name
    return out


def _normalized(array: LazyArray, index: Any) -> tuple[Any, ...] | None:
    """``index`` as dask normalizes it for ``array`` (one entry per axis), or None."""
    try:
        out: tuple[Any, ...] = normalize_index(
            index if isinstance(index, tuple) else (index,), array.shape
        )
    except Exception:
        return None
    return out


def _composed(array: LazyArray, normalized: tuple[Any, ...] | None) -> ViewSelection | None:
    """``array.selection`` after indexing with ``normalized`` (slices on any axis, a list on
    the channel axis), or None when it cannot be followed."""
    selection = getattr(array, "selection", None)
    if selection is None or normalized is None:
        return None
    if len(normalized) != len(selection):
        return None
    out: list[range | tuple[int, ...]] = []
    for axis, (chosen, k) in enumerate(zip(selection, normalized)):
        if isinstance(k, slice):
            out.append(chosen[k])
        elif axis == 0 and isinstance(k, (list, np.ndarray)) and np.ndim(k) == 1:
            picked = np.asarray(k)
            if picked.dtype.kind not in "iu":
                return None
            out.append(tuple(int(chosen[int(i)]) for i in picked))
        else:
            return None
    return tuple(out)


def _shifted_origin(array: LazyArray, normalized: tuple[Any, ...] | None) -> tuple[int, ...] | None:
    """The origin after indexing with ``normalized``, or None when the index is not a plain
    box (an integer or a list on a spatial axis, a step other than 1, a new axis)."""
    if normalized is None or len(normalized) != array.ndim:
        return None
    origin = []
    for axis, (k, n) in enumerate(zip(normalized, array.shape)):
        if axis == 0:
            if not isinstance(k, slice) and not hasattr(k, "__len__"):
                return None  # the channel axis dropped
            continue
        if not isinstance(k, slice):
            return None
        start, _stop, step = k.indices(int(n))
        if step != 1:
            return None
        origin.append(array.origin[axis - 1] + start)
    return tuple(origin)
