"""Foreground-weighted crop positions, computed once per (file, scene, timepoint) on a coarse
view, never on the full-resolution timepoint.

A coarse map is read from the coarsest pyramid level that still has at least ``min_size`` pixels
along Y and X, or, when the file has a single level, by a strided read of the loaded level
(``stride`` pixels apart along Y and X, every Z; dask reads it chunk by chunk, so memory stays at
a chunk per worker thread). Maps are kept per process in a small LRU, so later crops of the same
timepoint pay only a weighted draw.

The weight of a crop origin is the foreground fraction of the crop window at coarse scale, plus
``floor`` (so background crops keep a small chance and an empty timepoint still crops
uniformly).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Foreground", "clear", "coarse_map", "draw_origin"]

_lock = threading.Lock()
_maps: OrderedDict[Hashable, tuple[np.ndarray, tuple[float, ...]]] = OrderedDict()
# Cumulative weights per (map, window, floor): a later crop of the timepoint is one search.
_cdfs: OrderedDict[Hashable, tuple[np.ndarray, np.ndarray, tuple[int, ...]]] = OrderedDict()
max_maps = 64


@dataclass(frozen=True)
class Foreground:
    """How to weight crop positions by foreground.

    Args:
        threshold: pixels above it (any selected channel) are foreground. None with
            ``mask_key``: the mask is used as is (non-zero = foreground).
        mask_key: a sample key holding a user mask (array or lazy array, channel-first,
            the image's grid or any coarser grid covering the same extent).
        min_size: the coarsest pyramid level used still has this many pixels along Y and X.
        stride: step of the strided read when the file has no coarser level.
        floor: weight added to every position (0: only crops touching foreground).
        max_cells: the map is max-pooled to at most this many cells per axis, which bounds
            the per-timepoint cost of the weights whatever the image size.
    """

    threshold: float | None = None
    mask_key: str | None = None
    min_size: int = 64
    stride: int = 8
    floor: float = 0.01
    max_cells: int = 128

    def __post_init__(self) -> None:
        if self.threshold is None and self.mask_key is None:
            raise ValueError("Foreground needs a threshold or a mask_key")


def clear() -> None:
    """Forget the coarse maps of this process."""
    with _lock:
        _maps.clear()
        _cdfs.clear()


def coarse_map(
    fg: Foreground, meta: dict[str, Any], mask: Any = None
) -> tuple[np.ndarray, tuple[float, ...]]:
    """The coarse foreground map (bool, spatial axes) of the sample ``meta`` describes, and
    its scale per axis (loaded-level pixels per coarse pixel)."""
    full = tuple(int(n) for n in meta["crop_full_shape"])
    if mask is not None:
        raw = np.asarray(mask.compute() if hasattr(mask, "compute") else mask)
        on = np.asarray(raw > fg.threshold if fg.threshold is not None else raw != 0)
        m = np.asarray(on.any(axis=0)) if on.ndim == len(full) + 1 else on
        return m, tuple(f / c for f, c in zip(full, m.shape))
    ts = meta["timepoints"]
    key = (
        meta["path"], meta["scene"], meta["level"], tuple(ts) if isinstance(ts, list) else ts,
        tuple(meta["channels"]), fg.threshold, fg.min_size, fg.stride, full,
    )  # fmt: skip
    with _lock:
        found = _maps.get(key)
        if found is not None:
            _maps.move_to_end(key)
            return found
    coarse = _read_coarse(fg, meta, full)
    m = _pool(np.asarray((coarse > fg.threshold).any(axis=0)), fg.max_cells)
    result = (m, tuple(f / c for f, c in zip(full, m.shape)))
    with _lock:
        _maps[key] = result
        while len(_maps) > max_maps:
            _maps.popitem(last=False)
    return result


def _read_coarse(fg: Foreground, meta: dict[str, Any], full: tuple[int, ...]) -> np.ndarray:
    """C, (Z,) Y, X pixels of the coarse view, max over the sample's timepoints."""
    from tlcore.readers.api import levels
    from tlcore.readers.cache import open_cached

    options = meta.get("reader_options") or None
    ts = meta["timepoints"] if isinstance(meta["timepoints"], list) else [meta["timepoints"]]
    channels = list(meta["channels"])
    level = int(meta["level"])
    try:
        found = levels(meta["path"], meta["scene"], storage_options=options)
    except Exception:
        found = []
    here = found[level].shape if level < len(found) else None
    best = level
    for i in range(level + 1, len(found)):
        if here is None or len(found[i].shape) != 5:
            break
        if min(found[i].shape[3:]) >= fg.min_size and found[i].shape[2] == here[2]:
            best = i
    image = open_cached(meta["path"], meta["scene"], best, options)
    data = image.data[:, channels]
    if best == level:
        s = max(1, int(fg.stride))
        view = data[..., ::s, ::s]
    else:
        view = data
    stack = [np.asarray(view[t].compute(scheduler="synchronous")) for t in ts]
    out = np.asarray(np.max(np.stack(stack), axis=0))
    return out if len(full) == 3 else np.asarray(out[:, 0])


def _pool(m: np.ndarray, max_cells: int) -> np.ndarray:
    """Block-max of a bool map so that no axis has more than ``max_cells`` cells."""
    factors = [max(1, -(-n // max_cells)) for n in m.shape]
    if all(f == 1 for f in factors):
        return m
    padded = np.pad(m, [(0, -n % f) for n, f in zip(m.shape, factors)])
    shape: list[int] = []
    for n, f in zip(padded.shape, factors):
        shape += [n // f, f]
    return np.asarray(padded.reshape(shape).max(axis=tuple(range(1, 2 * m.ndim, 2))))


def draw_origin(
    rng: np.random.RandomState,
    fg_map: np.ndarray,
    scale: Sequence[float],
    roi: Sequence[int],
    full: Sequence[int],
    floor: float,
) -> tuple[int, ...]:
    """A crop origin (loaded-level pixels) drawn with weight = foreground fraction of the
    window at coarse scale + ``floor``."""
    win = tuple(min(max(1, round(r / s)), n) for r, s, n in zip(roi, scale, fg_map.shape))
    key = (id(fg_map), win, floor)
    with _lock:
        found = _cdfs.get(key)
    if found is None or found[0] is not fg_map:
        counts = _window_sums(fg_map.astype(np.float64), win)
        weights = counts / float(np.prod(win)) + floor
        cdf = np.cumsum(weights.ravel())
        found = (fg_map, cdf, weights.shape)
        with _lock:
            _cdfs[key] = found
            while len(_cdfs) > max_maps:
                _cdfs.popitem(last=False)
    _, cdf, shape = found
    flat_index = int(np.searchsorted(cdf, rng.uniform(0, cdf[-1]), side="right"))
    pick = np.unravel_index(min(flat_index, cdf.size - 1), shape)
    origin = []
    for c, s, r, n in zip(pick, scale, roi, full):
        lo = int(c * s)
        hi = max(lo, int((c + 1) * s) - 1)
        o = int(rng.randint(lo, hi + 1))
        origin.append(min(max(o, 0), n - r))
    return tuple(origin)


def _window_sums(a: np.ndarray, win: Sequence[int]) -> np.ndarray:
    """Sum of ``a`` over every window of shape ``win`` (valid positions), by cumulative sums."""
    out = a
    for axis, w in enumerate(win):
        c = np.cumsum(out, axis=axis)
        pad = [(0, 0)] * out.ndim
        pad[axis] = (1, 0)
        c = np.pad(c, pad)
        hi = np.take(c, range(w, c.shape[axis]), axis=axis)
        lo = np.take(c, range(0, c.shape[axis] - w), axis=axis)
        out = hi - lo
    return out
