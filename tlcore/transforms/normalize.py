"""NormalizeByImaged: scale each channel of a computed crop with the percentiles of its whole
image (file, scene, channel), not of the crop, so an intensity means the same in every crop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from tlcore.statistics import ImageStatistics, image_statistics
from tlcore.transforms.meta import meta_key

__all__ = ["NormalizeByImaged"]

PER = ("file", "timepoint")
StatsKey = tuple[str, str, str, int | None]


def _options_key(options: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(options or {}), sort_keys=True, default=repr)


class NormalizeByImaged(MapTransform):
    """Scale each channel to ``(x - p_lower) / (p_upper - p_lower)`` with the ``lower`` and
    ``upper`` percentiles of the sample's own image (its file, scene and channel), estimated
    once per file by :func:`tlcore.image_statistics` (a small sample, cached per process and
    on disk), not of the crop: MONAI's ``ScaleIntensityRangePercentilesd`` or
    ``NormalizeIntensityd`` would stretch a dim crop to the full range.

    Place it after :class:`tlcore.ComputeDaskd`: it reads the image's file, scene, channels and
    timepoints from ``d["<key>_meta"]``. Several timepoints folded into the channel axis
    (t0c0, t0c1, t1c0...) each get their channel's statistics.

    Args:
        keys: the image keys to scale (not label keys).
        lower: the percentile (0-100) mapped to 0.
        upper: the percentile (0-100) mapped to 1.
        clip: clip the result to [0, 1].
        per: ``"file"``: one set of statistics over every timepoint of the file;
            ``"timepoint"``: each timepoint's own (follows bleaching; costs one estimate per
            timepoint used, each cached).
        storage_options: fsspec options for the files (the dataset gives its own to loaders,
            and the datamodule prepares this transform's statistics with them).

    The statistics of ``per="file"`` are computed before training by the datamodule's
    ``setup()`` (:meth:`prepare`) and travel to the workers with the dataset in
    :attr:`table`; a file not prepared is estimated on its first sample (once per process,
    then from the disk cache).
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 1.0,
        upper: float = 99.8,
        clip: bool = False,
        per: str = "file",
        storage_options: Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0 <= lower < upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
        if per not in PER:
            raise ValueError(f"per must be one of {PER}, got {per!r}")
        self.lower = float(lower)
        self.upper = float(upper)
        self.clip = clip
        self.per = per
        self.storage_options = dict(storage_options or {})
        #: (path, scene, options, timepoint or None) -> [channel, (lower, upper)] of the file
        self.table: dict[StatsKey, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- statistics ----------------------------------------------------------------------------
    def statistics(
        self, path: str, scene: Any, options: Mapping[str, Any] | None, t: int | None
    ) -> ImageStatistics:
        """The image's statistics (every channel), from :func:`tlcore.image_statistics`."""
        merged = {**self.storage_options, **(options or {})}
        return image_statistics(
            path, scene=scene, timepoints=None if t is None else [t],
            percentiles=(self.lower, self.upper), storage_options=merged or None,
        )  # fmt: skip

    def _bounds(
        self, path: str, scene: Any, options: Mapping[str, Any] | None, t: int | None
    ) -> np.ndarray:
        key = (str(path), str(scene), _options_key(options), t)
        with self._lock:
            found = self.table.get(key)
        if found is None:
            found = self.statistics(path, scene, options, t).percentiles
            with self._lock:
                self.table[key] = found
        return found

    def prepare(self, images: Iterable[tuple[str, Any, Mapping[str, Any] | None]]) -> int:
        """Estimate the statistics of ``(path, scene, reader options)`` images now (with
        ``per="file"``; per-timepoint ones are made as samples need them). Returns how many
        were new to :attr:`table`."""
        if self.per != "file":
            return 0
        new = 0
        for path, scene, options in images:
            stats = self.statistics(path, scene, options, None)
            key = (str(path), str(stats.scene), _options_key(options), None)
            with self._lock:
                new += key not in self.table
                self.table[key] = stats.percentiles
                # The sample's metadata names the scene by id; rows may use its index.
                self.table[(str(path), str(scene), _options_key(options), None)] = stats.percentiles
        return new

    # -- the transform ---------------------------------------------------------------------------
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._scale(key, d[key], d.get(meta_key(key)))
        return d

    def _scale(self, key: Hashable, value: Any, meta: Any) -> Any:
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise TypeError(
                f"NormalizeByImaged: {key!r} is a {type(value).__name__}, not computed pixels: "
                "place NormalizeByImaged after ComputeDaskd"
            )
        if not isinstance(meta, Mapping) or "path" not in meta or "channels" not in meta:
            raise KeyError(
                f"NormalizeByImaged: no {meta_key(key)!r} with the image's path and channels: "
                "load the key with LoadLazyd (or a tlcore loader) and compute with ComputeDaskd"
            )
        channels = list(meta["channels"])
        n_t = meta.get("n_timepoints") or 1
        ts = meta.get("timepoints")
        ts = list(ts) if isinstance(ts, (list, tuple)) else [ts]
        if int(value.shape[0]) != n_t * len(channels):
            raise ValueError(
                f"NormalizeByImaged: {key!r} has {value.shape[0]} channels, its metadata "
                f"{n_t} timepoint(s) x {len(channels)} channel(s)"
            )
        lo = np.empty(value.shape[0], dtype=np.float64)
        hi = np.empty(value.shape[0], dtype=np.float64)
        options = meta.get("reader_options") or None
        for i in range(int(value.shape[0])):
            t_index, c_index = divmod(i, len(channels))
            t = int(ts[t_index]) if self.per == "timepoint" else None
            bounds = self._bounds(meta["path"], meta.get("scene", 0), options, t)
            lo[i], hi[i] = bounds[channels[c_index]]
        span = np.where(hi > lo, hi - lo, 1.0)
        shape = (-1,) + (1,) * (value.ndim - 1)
        if isinstance(value, torch.Tensor):
            out = value.float() if not value.is_floating_point() else value
            lo_t = torch.as_tensor(lo, dtype=out.dtype, device=out.device).reshape(shape)
            span_t = torch.as_tensor(span, dtype=out.dtype, device=out.device).reshape(shape)
            out = (out - lo_t) / span_t
            return out.clamp(0.0, 1.0) if self.clip else out
        arr = value.astype(np.float32) if not np.issubdtype(value.dtype, np.floating) else value
        scaled = (arr - lo.reshape(shape).astype(arr.dtype)) / span.reshape(shape).astype(arr.dtype)
        return np.clip(scaled, 0.0, 1.0) if self.clip else scaled
