"""MONAI-style dictionary transforms for the lazy path: load lazily, crop lazily, compute the
crop only.

    Compose([
        LoadLazyd(keys="raw"),                         # a dask array, metadata only
        RandLazyCropd(keys="raw", roi_size=(16, 64, 64)),  # or MONAI's RandSpatialCropd
        ComputeDaskd(keys="raw", dtype="float32"),     # reads only the crop -> torch.Tensor
        ...                                            # any MONAI transform from here on
    ])

Spatial crops are the only MONAI transforms that work on dask arrays (see docs/lazy-path.md for
the measured list); put everything else after :class:`ComputeDaskd`. This module imports MONAI
and torch, so it is not imported by ``import tlcore`` (``tlcore.ComputeDaskd`` loads it lazily).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from tlcore.api import open_lazy
from tlcore.images import LazyImage

__all__ = ["ComputeDaskd", "LoadLazyd", "RandLazyCropd", "meta_key"]


def meta_key(key: Hashable) -> str:
    """Where the transforms keep a key's metadata: ``"raw"`` -> ``"raw_meta"``."""
    return f"{key}_meta"


def _is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "compute")


def _parse_channels(value: Any, image: LazyImage) -> list[int] | None:
    """None/''/'all' -> every channel; 2, '0,2', [0, 2] or channel names -> those indices."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "all"):
            return None
        parts: list[Any] = [p.strip() for p in text.split(",")]
    elif isinstance(value, (int, np.integer)):
        parts = [int(value)]
    else:
        parts = list(value)
    indices = []
    for p in parts:
        if isinstance(p, str) and p.lstrip("-").isdigit():
            p = int(p)
        if isinstance(p, (int, np.integer)):
            n = image.shape[1]
            if not -n <= int(p) < n:
                raise IndexError(
                    f"{image.uri}: channel {p} out of range, the file has {n} channel(s) "
                    f"{list(image.channel_names)}"
                )
            indices.append(int(p) % n)
        elif p in image.channel_names:
            indices.append(image.channel_names.index(p))
        else:
            raise KeyError(
                f"{image.uri}: no channel {p!r}; channels are {list(image.channel_names)}"
            )
    return indices


class LoadLazyd(MapTransform):
    """Open the file named in ``d[path_key]`` through the reader registry and put one
    timepoint, lazily, under each key: a dask array shaped C, Z, Y, X (``spatial_dims=3``) or
    C, Y, X (``spatial_dims=2``, for files with Z == 1).

    The dict may also carry ``scene`` (index or id), ``level``, ``timepoint`` and ``channel``
    (``0``, ``"0,2"``, ``[0, 2]``, a channel name, or empty for all); missing ones take the
    defaults given here. Opened files are kept in a small per-transform cache, keyed by path,
    scene and level, so a file is opened once per worker, not once per sample.

    Metadata goes to ``d["<key>_meta"]``: path, reader, scene, level, timepoint, channels,
    pixel sizes, the time of the frame in seconds (when known) and the full image shape.
    """

    def __init__(
        self,
        keys: KeysCollection = "raw",
        path_key: str = "path",
        scene_key: str = "scene",
        level_key: str = "level",
        timepoint_key: str = "timepoint",
        channel_key: str = "channel",
        *,
        spatial_dims: int = 3,
        scene: int | str | None = None,
        level: int = 0,
        timepoint: int | None = None,
        reader: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_size: int = 32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.path_key = path_key
        self.scene_key = scene_key
        self.level_key = level_key
        self.timepoint_key = timepoint_key
        self.channel_key = channel_key
        self.spatial_dims = spatial_dims
        self.scene = scene
        self.level = level
        self.timepoint = timepoint
        self.reader = reader
        self.storage_options = dict(storage_options or {})
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[Any, ...], LazyImage] = OrderedDict()

    def open(self, path: Any, scene: Any, level: int) -> LazyImage:
        key = (str(path), scene, level)
        image = self._cache.get(key)
        if image is None:
            image = open_lazy(
                path, scene=scene, level=level, reader=self.reader,
                storage_options=self.storage_options or None,
            )  # fmt: skip
            self._cache[key] = image
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return image

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # each worker opens its own
        return state

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.path_key not in d:
            raise KeyError(
                f"LoadLazyd: the sample has no {self.path_key!r} key: {sorted(map(str, d))}"
            )
        path = d[self.path_key]
        scene = _cell(d.get(self.scene_key), self.scene)
        level = int(_cell(d.get(self.level_key), self.level))
        image = self.open(path, scene, level)
        t = _cell(d.get(self.timepoint_key), self.timepoint)
        n_t = image.shape[0]
        if t is None:
            if n_t != 1:
                raise ValueError(
                    f"LoadLazyd: {image.uri} has {n_t} timepoints and the sample names none: "
                    f"set {self.timepoint_key!r} in the sample (the timepoint sampler does) or "
                    "pass timepoint= to LoadLazyd"
                )
            t = 0
        t = int(t)
        if not -n_t <= t < n_t:
            raise IndexError(f"LoadLazyd: timepoint {t} out of range for {image.uri} (T={n_t})")
        t %= n_t
        channels = _parse_channels(d.get(self.channel_key), image)
        array = image.data[t]  # C, Z, Y, X
        if channels is not None:
            lo = channels[0]
            contiguous = channels == list(range(lo, lo + len(channels)))
            array = array[lo : lo + len(channels)] if contiguous else array[channels]
        if self.spatial_dims == 2:
            if array.shape[1] != 1:
                raise ValueError(
                    f"LoadLazyd: spatial_dims=2 but {image.uri} scene {image.scene!r} has "
                    f"Z={array.shape[1]}; use spatial_dims=3"
                )
            array = array[:, 0]
        times = image.time_axis.seconds()
        meta = {
            "path": str(path),
            "uri": image.uri,
            "reader": image.reader,
            "scene": image.scene,
            "level": image.level,
            "timepoint": t,
            "time_s": times[t] if times is not None else None,
            "channels": channels if channels is not None else list(range(image.shape[1])),
            "pixel_sizes": tuple(image.pixel_sizes),
            "image_shape": image.shape,
            "crop_start": (0,) * self.spatial_dims,
            "crop_size": tuple(int(n) for n in array.shape[1:]),
        }
        for key in self.keys:  # the loader creates its keys: they need not exist yet
            d[key] = array
            d[meta_key(key)] = dict(meta)
        return d


def _cell(value: Any, default: Any) -> Any:
    """A manifest cell, or the default when the cell is missing or empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return default
    if isinstance(value, str) and not value.strip():
        return default
    return value


class RandLazyCropd(Randomizable, MapTransform):
    """Random spatial crop of lazy (or computed) channel-first arrays, recorded in metadata.

    Works like MONAI's ``RandSpatialCropd`` with a fixed ``roi_size`` (``-1`` keeps an axis
    whole), but also writes the crop box to ``d["<key>_meta"]["crop_start"/"crop_size"]`` in
    the pixel grid of the loaded level, so a prediction can be placed back. All keys get the
    same box. A roi larger than the image is an error that names the file, not a silent
    smaller crop.
    """

    def __init__(
        self,
        keys: KeysCollection,
        roi_size: Sequence[int] | int,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.roi_size = roi_size
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
        self.randomize(spatial)
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


class ComputeDaskd(MapTransform):
    """Compute lazy arrays (reading only the chunks they still cover) into torch tensors.

    ``dtype`` converts after reading (``"float32"``, ``"float16"``, ``torch.float32``...).
    ``scheduler="synchronous"`` is the default because dask's threaded scheduler can hang in
    forked DataLoader workers; the zarr reader still decodes the touched chunks concurrently.
    Arrays that are already computed (numpy, torch) are converted too, so the transform is
    safe to leave in a pipeline whose loader is not lazy.
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: Any = None,
        scheduler: str = "synchronous",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dtype = dtype
        self.scheduler = scheduler

    def _np_dtype(self) -> Any:
        if self.dtype is None:
            return None
        if isinstance(self.dtype, torch.dtype):
            return torch.empty((), dtype=self.dtype).numpy().dtype
        return np.dtype(self.dtype)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        dtype = self._np_dtype()
        for key in self.key_iterator(d):
            value = d[key]
            if _is_dask(value):
                value = value.compute(scheduler=self.scheduler)
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            array = np.asarray(value)
            if dtype is not None and array.dtype != dtype:
                array = array.astype(dtype)
            elif array.dtype == np.uint16 or array.dtype == np.uint32:
                # torch has no unsigned 16/32-bit tensors that MONAI can use: widen losslessly.
                array = array.astype(np.int32 if array.dtype == np.uint16 else np.int64)
            d[key] = torch.from_numpy(np.ascontiguousarray(array))
        return d
