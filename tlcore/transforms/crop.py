"""RandLazyCropd: a random (optionally chunk-aligned or foreground-weighted) crop of the lazy
array, recorded in the sample's metadata; nothing is read.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from tlcore.transforms.foreground import Foreground, coarse_map, draw_origin
from tlcore.transforms.meta import meta_key


class RandLazyCropd(Randomizable, MapTransform):
    """Random spatial crop of lazy (or computed) channel-first arrays, recorded in metadata.

    Works like MONAI's ``RandSpatialCropd`` with a fixed ``roi_size`` (``-1`` keeps an axis
    whole), but also writes the crop box to ``d["<key>_meta"]["crop_start"/"crop_size"]`` in
    the pixel grid of the loaded level, so a prediction can be placed back. All keys get the
    same box. A roi larger than the image is an error that names the file, not a silent
    smaller crop.

    ``align_to_chunks``: origins are drawn among the positions where the crop starts or ends
    on a storage chunk boundary (the first key's dask chunks, which follow the storage), so a
    crop decodes the fewest chunks possible (docs/lazy-path.md has the arithmetic). Every
    pixel can still be drawn: the end-aligned positions reach the far edge.

    ``foreground``: a :class:`tlcore.transforms.foreground.Foreground` that weights origins by the
    foreground fraction of the crop window, on a coarse map computed once per (file, scene,
    timepoint) per process. With ``align_to_chunks`` too, the drawn origin is snapped to the
    nearest aligned position.
    """

    def __init__(
        self,
        keys: KeysCollection,
        roi_size: Sequence[int] | int,
        allow_missing_keys: bool = False,
        *,
        align_to_chunks: bool = False,
        foreground: Foreground | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.roi_size = roi_size
        self.align_to_chunks = align_to_chunks
        self.foreground = foreground
        self._start: tuple[int, ...] | None = None

    def randomize(self, data: Any = None) -> None:
        spatial = tuple(int(n) for n in data)
        roi = self._roi(spatial)
        self._start = tuple(int(self.R.randint(0, n - r + 1)) for n, r in zip(spatial, roi))

    def _roi(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        roi = (
            (self.roi_size,) * len(spatial)
            if isinstance(self.roi_size, int)
            else tuple(self.roi_size)
        )
        if len(roi) != len(spatial):
            raise ValueError(f"roi_size {roi} has {len(roi)} axes, the image {len(spatial)}")
        return tuple(n if r is None or r <= 0 else int(r) for r, n in zip(roi, spatial))

    def _aligned(self, array: Any, roi: tuple[int, ...]) -> list[list[int]]:
        """Per spatial axis, the origins where the crop starts or ends on a chunk boundary."""
        out = []
        for axis, r in enumerate(roi, start=1):
            n = int(array.shape[axis])
            chunks = getattr(array, "chunks", None)
            sizes = chunks[axis] if chunks is not None else (n,)
            bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
            cands = {b for b in bounds if b <= n - r} | {b - r for b in bounds if b - r >= 0}
            out.append(sorted(c for c in cands | {0, n - r} if 0 <= c <= n - r))
        return out

    def _draw(self, d: dict[Hashable, Any], key: Hashable, roi: tuple[int, ...]) -> None:
        array = d[key]
        spatial = tuple(int(n) for n in array.shape[1:])
        aligned = self._aligned(array, roi) if self.align_to_chunks else None
        if self.foreground is not None:
            meta = d.get(meta_key(key), {})
            origin0 = getattr(array, "origin", (0,) * len(spatial))
            mask = d.get(self.foreground.mask_key) if self.foreground.mask_key else None
            fg_map, scale = coarse_map(self.foreground, meta, mask)
            full = tuple(int(n) for n in meta.get("crop_full_shape", spatial))
            start = draw_origin(self.R, fg_map, scale, roi, full, self.foreground.floor)
            # The map covers the whole loaded image; this array may already be a crop of it.
            start = tuple(
                min(max(s - o, 0), n - r) for s, o, n, r in zip(start, origin0, spatial, roi)
            )
            if aligned is not None:
                start = tuple(_nearest(c, s) for c, s in zip(aligned, start))
            self._start = start
        elif aligned is not None:
            self._start = tuple(int(c[self.R.randint(0, len(c))]) for c in aligned)
        else:
            self.randomize(spatial)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        spatial = tuple(int(n) for n in d[keys[0]].shape[1:])
        roi = self._roi(spatial)
        if any(r > n for r, n in zip(roi, spatial)):
            where = d.get(meta_key(keys[0]), {}).get("uri", "the image")
            raise ValueError(
                f"RandLazyCropd: roi_size {roi} is larger than {where} ({spatial} after "
                "loading); choose a smaller roi_size or pad after ComputeDaskd"
            )
        self._draw(d, keys[0], roi)
        assert self._start is not None
        index = (slice(None), *(slice(s, s + r) for s, r in zip(self._start, roi)))
        for key in keys:
            if tuple(int(n) for n in d[key].shape[1:]) != spatial:
                raise ValueError(f"RandLazyCropd: keys {keys} have different spatial shapes")
            d[key] = d[key][index]
            meta = dict(d.get(meta_key(key), {}))
            prev = meta.get("crop_start", (0,) * len(spatial))
            meta["crop_start"] = tuple(int(p) + s for p, s in zip(prev, self._start))
            meta["crop_size"] = roi
            d[meta_key(key)] = meta
        return d


def _nearest(candidates: Sequence[int], value: int) -> int:
    return min(candidates, key=lambda c: abs(c - value))
