"""A dask array that remembers where it sits in the image it was loaded from.

:class:`tlcore.LoadLazyd` hands out a :class:`LazyArray`. Slicing it (``x[:, 4:20, 0:64]``, what
tlcore's and MONAI's spatial crops do) returns another :class:`LazyArray` whose ``origin`` is
shifted by the slice starts, so :class:`tlcore.ComputeDaskd` knows the crop box whichever
transform chose it, without reading a pixel. Any other operation (``astype``, arithmetic,
fancy indexing, integer indexing of a spatial axis) returns a plain dask array: the box is then
unknown and reported as such, never guessed.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
from dask.array.slicing import normalize_index

__all__ = ["LazyArray", "track"]


class LazyArray(da.Array):  # type: ignore[misc]
    """A channel-first (C, Z, Y, X or C, Y, X) dask array with its place in the loaded image.

    Attributes:
        origin: start of this array's spatial axes in the loader's output (the level's grid).
        full_shape: spatial shape of the loader's output (the whole timepoint at that level).
        source_itemsize: bytes per pixel as stored (what a compute decodes, before any cast).
    """

    origin: tuple[int, ...]
    full_shape: tuple[int, ...]
    source_itemsize: int

    def __getitem__(self, index: Any) -> Any:
        out = super().__getitem__(index)
        origin = _shifted_origin(self, index)
        if origin is None or not isinstance(out, da.Array) or out.ndim != self.ndim:
            return out
        return track(out, origin, self.full_shape, self.source_itemsize)

    @property
    def is_whole(self) -> bool:
        """True when no spatial crop has been applied since loading."""
        return all(o == 0 for o in self.origin) and tuple(self.shape[1:]) == self.full_shape


def track(
    array: da.Array,
    origin: tuple[int, ...] | None = None,
    full_shape: tuple[int, ...] | None = None,
    source_itemsize: int | None = None,
) -> LazyArray:
    """``array`` as a :class:`LazyArray` (same graph, nothing computed); by default it is the
    whole image: origin 0, full shape its own spatial shape."""
    out = LazyArray(array.dask, array.name, array.chunks, meta=array._meta)
    spatial = tuple(int(n) for n in array.shape[1:])
    out.origin = tuple(origin) if origin is not None else (0,) * len(spatial)
    out.full_shape = tuple(full_shape) if full_shape is not None else spatial
    out.source_itemsize = int(source_itemsize or array.dtype.itemsize)
    return out


def _shifted_origin(array: LazyArray, index: Any) -> tuple[int, ...] | None:
    """The origin after ``array[index]``, or None when the index is not a plain box (an
    integer or a list on a spatial axis, a step other than 1, a new axis)."""
    try:
        normalized = normalize_index(index if isinstance(index, tuple) else (index,), array.shape)
    except Exception:
        return None
    if len(normalized) != array.ndim:
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
