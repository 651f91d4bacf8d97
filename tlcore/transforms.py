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

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from tlcore.cache import open_cached
from tlcore.compute import compute
from tlcore.images import LazyImage
from tlcore.manifest import parse_channels

__all__ = ["BioIOImageLoaderd", "ComputeDaskd", "LoadLazyd", "RandLazyCropd", "meta_key"]


def meta_key(key: Hashable) -> str:
    """Where the transforms keep a key's metadata: ``"raw"`` -> ``"raw_meta"``."""
    return f"{key}_meta"


def _is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "compute")


def _parse_channels(value: Any, image: LazyImage) -> list[int] | None:
    """None/''/'all' -> every channel; 2, '0,2', [0, 2] or channel names -> those indices."""
    try:
        parsed = parse_channels(value)
    except ValueError as exc:
        raise ValueError(f"{image.uri}: {exc}") from None
    if parsed is None:
        return None
    n = image.shape[1]
    indices = []
    for p in parsed:
        if isinstance(p, int):
            if not -n <= p < n:
                raise IndexError(
                    f"{image.uri}: channel {p} out of range, the file has {n} channel(s) "
                    f"{list(image.channel_names)}"
                )
            indices.append(p % n)
        elif p in image.channel_names:
            indices.append(image.channel_names.index(p))
        else:
            raise KeyError(
                f"{image.uri}: no channel {p!r}; channels are {list(image.channel_names)}"
            )
    return indices


def _timepoints(value: Any, image: LazyImage, key: str) -> int | list[int]:
    """The sample's ``T``: one index, or a list of them (several timepoints)."""
    n_t = image.shape[0]
    if isinstance(value, str):
        value = [int(v) for v in value.split(",")] if "," in value else int(value)
    many = isinstance(value, (list, tuple)) or (hasattr(value, "ndim") and value.ndim == 1)
    values = [int(v) for v in value] if many else [int(value)]
    if not values:
        raise ValueError(f"LoadLazyd: {image.uri}: the sample's {key!r} is an empty list")
    for t in values:
        if not -n_t <= t < n_t:
            raise IndexError(f"LoadLazyd: timepoint {t} out of range for {image.uri} (T={n_t})")
    values = [t % n_t for t in values]
    return values if many else values[0]


class LoadLazyd(MapTransform):
    """Open the file a sample names through the reader registry and put its timepoint(s),
    lazily, under each key: a dask array shaped C, Z, Y, X (``spatial_dims=3``) or C, Y, X
    (``spatial_dims=2``, for files with Z == 1). Nothing is read until :class:`ComputeDaskd`.

    The sample uses the dataset's vocabulary: ``original_path``, ``scene`` (index or id),
    ``resolution`` (level), ``C`` (``0``, ``"0,2"``, ``[0, 2]``, channel names, or empty for
    all) and ``T`` (an int, or a list of ints for several timepoints), and ``reader_options``
    (a dict merged over ``storage_options``: per-file reader options such as
    ``{"czi_tiles": True}``); missing or empty ones take the defaults given here. Each key
    name can be changed (``path_key=``...).

    Several timepoints are folded into the channel axis, time-major: ``T`` of length 3 with
    2 channels gives 6 channels ordered t0c0, t0c1, t1c0, ... so that MONAI's spatial
    transforms apply one box, one flip, one rotation to every timepoint. The datamodule's
    collate restores the time axis (``B, T, C, Z, Y, X``); ``<key>_meta["n_timepoints"]`` and
    ``["n_channels"]`` say how to do it by hand.

    ``labels`` maps output keys to the image's label images (``{"seg": "cells"}``), loaded at
    the same timepoints on the same grid, so one crop applies to both.

    Opened files are cached per process (:mod:`tlcore.cache`), so a file's metadata is read
    once per worker, not once per sample. Metadata goes to ``d["<key>_meta"]``: path, reader,
    scene, level, timepoints, their times in seconds (None where unknown), channels, pixel
    sizes, the full image shape and the crop box (updated by the crops).
    """

    def __init__(
        self,
        keys: KeysCollection = "raw",
        path_key: str = "original_path",
        scene_key: str = "scene",
        level_key: str = "resolution",
        timepoint_key: str = "T",
        channel_key: str = "C",
        options_key: str = "reader_options",
        *,
        spatial_dims: int = 3,
        scene: int | str | None = None,
        level: int = 0,
        timepoint: int | None = None,
        labels: Mapping[str, str] | None = None,
        reader: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
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
        self.options_key = options_key
        self.spatial_dims = spatial_dims
        self.scene = scene
        self.level = level
        self.timepoint = timepoint
        self.labels = dict(labels or {})
        self.reader = reader
        self.storage_options = dict(storage_options or {})

    def open(
        self, path: Any, scene: Any, level: int, options: Mapping[str, Any] | None = None
    ) -> LazyImage:
        """The opened image (from the per-process cache); ``options`` (the sample's reader
        options) are merged over ``storage_options``."""
        merged = {**self.storage_options, **(options or {})}
        return open_cached(path, scene, level, merged or None, self.reader)

    def _select(self, data: Any, image: LazyImage, t: int | list[int], channels: Any) -> Any:
        """TCZYX dask array -> the (folded) C, Z, Y, X or C, Y, X array of the sample."""
        import dask.array as da

        if channels is not None:
            lo = channels[0]
            contiguous = channels == list(range(lo, lo + len(channels)))
            data = data[:, lo : lo + len(channels)] if contiguous else data[:, channels]
        array = da.concatenate([data[i] for i in t], axis=0) if isinstance(t, list) else data[t]
        if self.spatial_dims == 2:
            if array.shape[1] != 1:
                raise ValueError(
                    f"LoadLazyd: spatial_dims=2 but {image.uri} scene {image.scene!r} has "
                    f"Z={array.shape[1]}; use spatial_dims=3"
                )
            array = array[:, 0]
        return array

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.path_key not in d:
            raise KeyError(
                f"LoadLazyd: the sample has no {self.path_key!r} key: {sorted(map(str, d))}"
            )
        path = d[self.path_key]
        scene = _cell(d.get(self.scene_key), self.scene)
        level = int(_cell(d.get(self.level_key), self.level))
        image = self.open(path, scene, level, d.get(self.options_key) or None)
        t = _cell(d.get(self.timepoint_key), self.timepoint)
        if t is None:
            if image.shape[0] != 1:
                raise ValueError(
                    f"LoadLazyd: {image.uri} has {image.shape[0]} timepoints and the sample "
                    f"names none: set {self.timepoint_key!r} in the sample (the dataset does) "
                    "or pass timepoint= to LoadLazyd"
                )
            t = 0
        t = _timepoints(t, image, self.timepoint_key)
        channels = _parse_channels(d.get(self.channel_key), image)
        array = self._select(image.data, image, t, channels)
        times = image.time_axis.seconds()
        ts = t if isinstance(t, list) else [t]
        n_channels = len(channels) if channels is not None else image.shape[1]
        meta = {
            "path": str(path),
            "uri": image.uri,
            "reader": image.reader,
            "scene": image.scene,
            "level": image.level,
            "timepoints": t,
            "time_s": (
                None if times is None else [times[i] for i in ts] if isinstance(t, list)
                else times[t]
            ),
            "n_timepoints": len(ts) if isinstance(t, list) else None,
            "n_channels": n_channels,
            "channels": channels if channels is not None else list(range(image.shape[1])),
            "pixel_sizes": tuple(image.pixel_sizes),
            "image_shape": image.shape,
            "crop_start": (0,) * self.spatial_dims,
            "crop_size": tuple(int(n) for n in array.shape[1:]),
        }  # fmt: skip
        for key in self.keys:  # the loader creates its keys: they need not exist yet
            d[key] = array
            d[meta_key(key)] = dict(meta)
        for key, name in self.labels.items():
            if name not in image.labels:
                raise KeyError(
                    f"LoadLazyd: {image.uri} scene {image.scene!r} has no label image {name!r}; "
                    f"it has {sorted(image.labels)}"
                )
            label = image.labels[name]
            d[key] = self._select(label, image, t, None)
            d[meta_key(key)] = {**meta, "label": name, "n_channels": int(label.shape[1])}
        return d


class BioIOImageLoaderd(LoadLazyd):
    """The loader of the lazy-loading guide, with its signature, on tlcore's registry.

    ``BioIOImageLoaderd(path_key="original_path", out_key="raw", dask_load=True, dtype=...)``
    reads the same sample keys as :class:`LoadLazyd` (``scene``, ``resolution``, ``C``, ``T``)
    through whichever tlcore reader opens the file, and returns channel-first arrays (so
    ``EnsureChannelFirstd`` is not needed). With ``dask_load``/``lazy_load`` (the default) the
    output is lazy: crop it, then :class:`ComputeDaskd`. With ``dask_load=False`` the
    selected timepoint(s) are read at once, as numpy, for small images or as an eager baseline.
    ``dtype`` converts the pixels (lazily when the output is lazy).
    """

    def __init__(
        self,
        path_key: str = "original_path",
        out_key: str = "raw",
        dask_load: bool = True,
        lazy_load: bool | None = None,
        dtype: Any = None,
        scene_key: str = "scene",
        resolution_key: str = "resolution",
        channel_key: str = "C",
        timepoint_key: str = "T",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            keys=out_key,
            path_key=path_key,
            scene_key=scene_key,
            level_key=resolution_key,
            timepoint_key=timepoint_key,
            channel_key=channel_key,
            **kwargs,
        )
        self.out_key = out_key
        self.lazy = dask_load if lazy_load is None else lazy_load
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = super().__call__(data)
        dtype = _np_dtype(self.dtype)
        for key in self.key_iterator(d):
            array = d[key]
            if dtype is not None:
                array = array.astype(dtype)
            if not self.lazy:
                array = np.asarray(array.compute(scheduler=_default_scheduler()))
            d[key] = array
        return d


def _cell(value: Any, default: Any) -> Any:
    """A manifest cell, or the default when the cell is missing or empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return default
    if isinstance(value, str) and not value.strip():
        return default
    return value


def _np_dtype(dtype: Any) -> np.dtype[Any] | None:
    """``"float16"``, ``numpy.float32``, ``torch.float32`` or None -> a numpy dtype or None."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return np.dtype(torch.empty((), dtype=dtype).numpy().dtype)
    if isinstance(dtype, str) and dtype.startswith("torch."):
        return _np_dtype(getattr(torch, dtype[len("torch.") :]))
    if isinstance(dtype, str) and dtype.startswith("numpy."):
        dtype = dtype[len("numpy.") :]
    resolved: np.dtype[Any] = np.dtype(dtype)
    return resolved


def _default_scheduler() -> str:
    """Synchronous inside DataLoader workers (the threaded scheduler can hang after fork),
    threads in the main process."""
    info = torch.utils.data.get_worker_info()
    return "synchronous" if info is not None else "threads"


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

    ``dtype`` converts after reading (``"float32"``, ``"float16"``, ``numpy.float32``,
    ``torch.float32``...). ``scheduler`` is dask's: by default ``"synchronous"`` inside
    DataLoader workers (dask's threaded scheduler can hang in forked workers) and ``"threads"``
    in the main process.
    Arrays that are already computed (numpy, torch) are converted too, so the transform is
    safe to leave in a pipeline whose loader is not lazy.
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: Any = None,
        scheduler: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dtype = dtype
        self.scheduler = scheduler

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        dtype = _np_dtype(self.dtype)
        scheduler = self.scheduler or _default_scheduler()
        for key in self.key_iterator(d):
            value = d[key]
            if _is_dask(value):
                value = compute(value, scheduler)
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            array = np.asarray(value)
            if dtype is not None and array.dtype != dtype:
                array = array.astype(dtype)
            elif array.dtype == np.uint16 or array.dtype == np.uint32:
                # torch has no unsigned 16/32-bit tensors that MONAI can use: widen losslessly.
                array = array.astype(np.int32 if array.dtype == np.uint16 else np.int64)
            d[key] = torch.from_numpy(np.ascontiguousarray(array))
            meta = d.get(meta_key(key))
            if isinstance(meta, dict) and "crop_size" in meta:
                size = tuple(int(n) for n in array.shape[1:])
                if tuple(meta["crop_size"]) != size:
                    # Cropped by a transform that records no box (MONAI's own crops): say the
                    # box is unknown rather than keep the loader's whole-image box.
                    d[meta_key(key)] = {**meta, "crop_start": None, "crop_size": size}
        return d
