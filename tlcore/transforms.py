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

import threading
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

from tlcore import chunkcache
from tlcore.cache import open_cached
from tlcore.compute import compute
from tlcore.foreground import Foreground, coarse_map, draw_origin
from tlcore.guards import LazyPipelineError, check_pipeline, enclosing_pipeline
from tlcore.images import LazyImage
from tlcore.lazy import reader_of
from tlcore.lazyarray import LazyArray, track
from tlcore.manifest import parse_channels
from tlcore.regions import ReaderView
from tlcore.source import is_reader_option

__all__ = [
    "BioIOImageLoaderd",
    "ComputeDaskd",
    "Foreground",
    "LazyPipelineError",
    "LoadImaged",
    "LoadLazyd",
    "OmeZarrReader",
    "RandLazyCropd",
    "TlcoreReader",
    "WholeImageWarning",
    "meta_key",
]


class WholeImageWarning(UserWarning):
    """ComputeDaskd is about to read a whole (large) image: no crop came before it."""


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

    The lazy output is a :class:`tlcore.lazyarray.LazyArray`: it remembers its place in the
    image through any spatial crop, MONAI's included, so :class:`ComputeDaskd` reports the box.
    On the first sample the loader checks the pipeline it runs in
    (:mod:`tlcore.guards`): a transform that needs pixels placed before ``ComputeDaskd``
    raises :class:`tlcore.guards.LazyPipelineError` naming it and the fix.

    ``chunk_cache``: None reads through the reader directly; a byte count reads whole storage
    chunks through this process's decoded-chunk cache of that size (several crops of one
    timepoint decode a shared chunk once), and 0 counts decoded chunks without caching
    (:data:`tlcore.chunkcache.stats`: read amplification, counted).
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
        chunk_cache: int | None = None,
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
        self.chunk_cache = chunk_cache
        self.guard = True  # check the enclosing pipeline (off for eager output)
        self._checked: set[int] = set()

    def _check_pipeline(self) -> None:
        pipeline = enclosing_pipeline(self)
        if pipeline is None or id(pipeline) in self._checked:
            return
        keys = [*self.keys, *self.labels]
        check_pipeline(self, keys, pipeline)
        self._checked.add(id(pipeline))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_checked"] = set()  # ids of the parent's pipelines mean nothing in a worker
        return state

    def open(
        self, path: Any, scene: Any, level: int, options: Mapping[str, Any] | None = None
    ) -> LazyImage:
        """The opened image (from the per-process cache); ``options`` (the sample's reader
        options) are merged over ``storage_options``."""
        merged = {**self.storage_options, **(options or {})}
        return open_cached(path, scene, level, merged or None, self.reader)

    def _select(
        self,
        data: Any,
        image: LazyImage,
        t: int | list[int],
        channels: Any,
        dtype: np.dtype[Any] | None = None,
    ) -> tuple[Any, ReaderView | None]:
        """TCZYX dask array -> the (folded) C, Z, Y, X or C, Y, X array of the sample, in
        ``dtype`` when given (cast after reading), and the view it is built on (None when the
        image's array is not a plain :class:`tlcore.lazy.ArrayReader` array)."""
        if self.spatial_dims == 2 and image.shape[2] != 1:
            raise ValueError(
                f"LoadLazyd: spatial_dims=2 but {image.uri} scene {image.scene!r} has "
                f"Z={image.shape[2]}; use spatial_dims=3"
            )
        reader = reader_of(data)
        if reader is not None:
            # One view of the reader: no dask indexing layer over every chunk of the
            # timepoint, and its crops are read as one region (tlcore.compute).
            view = ReaderView(
                reader, t, channels, drop_z=self.spatial_dims == 2, dtype=dtype,
                chunks=data.chunks,
            )  # fmt: skip
            return view.to_dask(), view
        import dask.array as da

        if channels is not None:
            lo = channels[0]
            contiguous = channels == list(range(lo, lo + len(channels)))
            data = data[:, lo : lo + len(channels)] if contiguous else data[:, channels]
        array = da.concatenate([data[i] for i in t], axis=0) if isinstance(t, list) else data[t]
        if self.spatial_dims == 2:
            array = array[:, 0]
        if dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        return array, None

    def _lazy_dtype(self) -> np.dtype[Any] | None:
        """The dtype the lazy image keys are read into (None: as stored)."""
        return None

    def _source(self, data: Any) -> Any:
        """The image's TCZYX array, through the chunk cache when asked."""
        if self.chunk_cache is None:
            return data
        return chunkcache.cached(data, self.chunk_cache)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if self.guard:
            self._check_pipeline()
        d = dict(data)
        if self.path_key not in d:
            raise KeyError(
                f"LoadLazyd: the sample has no {self.path_key!r} key: {sorted(map(str, d))}"
            )
        path = d[self.path_key]
        scene = _cell(d.get(self.scene_key), self.scene)
        level = int(_cell(d.get(self.level_key), self.level))
        options = d.get(self.options_key) or None
        image = self.open(path, scene, level, options)
        merged_options = {**self.storage_options, **(options or {})} or None
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
        array, view = self._select(self._source(image.data), image, t, channels, self._lazy_dtype())
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
            "crop_full_shape": tuple(int(n) for n in array.shape[1:]),
            "downsampling": _downsampling(path, image, merged_options)[-self.spatial_dims :],
            # Reader options only: the fsspec ones may hold credentials, and metadata reaches
            # batches and logs.
            "reader_options": {
                k: v for k, v in (merged_options or {}).items() if is_reader_option(k)
            },
        }  # fmt: skip
        array = track(array, source_itemsize=np.dtype(image.data.dtype).itemsize, view=view)
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
            label_array, label_view = self._select(label, image, t, None)
            d[key] = track(label_array, view=label_view)
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
        self.guard = self.lazy

    def _lazy_dtype(self) -> np.dtype[Any] | None:
        return _np_dtype(self.dtype) if self.lazy else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = super().__call__(data)
        if self.lazy:
            return d  # already in ``dtype``: the loader reads into it (``_lazy_dtype``)
        dtype = _np_dtype(self.dtype)
        for key in self.key_iterator(d):
            d[key] = _read_whole(d[key], dtype)
        return d


def _read_whole(array: Any, dtype: np.dtype[Any] | None) -> np.ndarray:
    """The eager path: the whole selection, read block by block into one preallocated array
    (so the peak is the image once in ``dtype``, not the image plus dask's pieces)."""
    import dask.array as da

    out = np.empty(array.shape, dtype=dtype or array.dtype)
    da.store(array, out, lock=False, scheduler=_default_scheduler())
    return out


_levels_lock = threading.Lock()
_level_scales: dict[tuple[Any, ...], tuple[float, ...]] = {}


def _downsampling(path: Any, image: LazyImage, options: Any) -> tuple[float, ...]:
    """Level-0 pixels per pixel of the loaded level, Z, Y, X (1s at level 0)."""
    if image.level == 0:
        return (1.0, 1.0, 1.0)
    key = (str(path), image.scene, image.level, repr(options))
    with _levels_lock:
        found = _level_scales.get(key)
    if found is None:
        from tlcore.api import levels

        found = tuple(
            float(f) for f in levels(path, image.scene, storage_options=options)[image.level]
            .downsampling[2:]
        )  # fmt: skip
        with _levels_lock:
            _level_scales[key] = found
    return found


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

    ``align_to_chunks``: origins are drawn among the positions where the crop starts or ends
    on a storage chunk boundary (the first key's dask chunks, which follow the storage), so a
    crop decodes the fewest chunks possible (docs/lazy-path.md has the arithmetic). Every
    pixel can still be drawn: the end-aligned positions reach the far edge.

    ``foreground``: a :class:`tlcore.foreground.Foreground` that weights origins by the
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


class ComputeDaskd(MapTransform):
    r"""Compute lazy arrays (reading only the chunks they still cover) into MONAI
    ``MetaTensor``\ s with the sample's metadata.

    ``dtype`` converts after reading (``"float32"``, ``"float16"``, ``numpy.float32``,
    ``torch.float32``...); without it ``uint16``/``uint32`` widen losslessly to ``int32``/
    ``int64`` (torch has no usable unsigned types). ``scheduler`` is dask's: by default
    ``"synchronous"`` inside DataLoader workers (dask's threaded scheduler can hang in forked
    workers) and ``"threads"`` in the main process.

    The tensor's ``.meta`` (and ``d["<key>_meta"]``) holds the source path, scene, level,
    timepoints, pixel sizes, and the crop box in the loaded level's grid (``crop_start``,
    ``crop_size``) and in level-0 voxels (``crop_start_level0``, ``crop_size_level0``),
    whichever crop chose it: tlcore's, MONAI's spatial crops on the lazy array (tracked by
    :class:`tlcore.lazyarray.LazyArray`), or MONAI's crops on an eager MetaTensor (read from
    its ``applied_operations``). Where no box can be known (the lazy array went through
    something else than slicing) ``crop_start`` is None rather than a guess.

    Arrays that are already computed (numpy, torch) get the same dtype handling, so the
    transform is safe in a pipeline whose loader is eager; other values pass through.

    A lazy array that was never cropped and holds more than ``warn_bytes`` stored bytes gives
    a :class:`WholeImageWarning` with the bytes about to be read (None: never warn).
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: Any = None,
        scheduler: str | None = None,
        allow_missing_keys: bool = False,
        *,
        warn_bytes: int | None = 256 * 2**20,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dtype = dtype
        self.scheduler = scheduler
        self.warn_bytes = warn_bytes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        dtype = _np_dtype(self.dtype)
        scheduler = self.scheduler or _default_scheduler()
        for key in self.key_iterator(d):
            value = d[key]
            box: tuple[int, ...] | None = None
            tracked = False
            if _is_dask(value):
                if isinstance(value, LazyArray):
                    tracked, box = True, value.origin
                    self._warn_whole(value, d.get(meta_key(key)))
                    chunkcache.stats.crop(int(value.size) * value.source_itemsize)
                value = compute(value, scheduler)
            elif isinstance(value, MetaTensor):
                box = _monai_box(value)
                tracked = box is not None
            elif not isinstance(value, (np.ndarray, torch.Tensor)):
                continue
            array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if dtype is not None and array.dtype != dtype:
                array = array.astype(dtype)
            elif array.dtype == np.uint16 or array.dtype == np.uint32:
                # torch has no unsigned 16/32-bit tensors that MONAI can use: widen losslessly.
                array = array.astype(np.int32 if array.dtype == np.uint16 else np.int64)
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            meta = d.get(meta_key(key))
            if isinstance(meta, dict):
                meta = _with_box(meta, box, tracked, tuple(int(n) for n in array.shape[1:]))
                d[meta_key(key)] = meta
                d[key] = MetaTensor(tensor, meta=_tensor_meta(meta))
            else:
                d[key] = MetaTensor(tensor)
        return d

    def _warn_whole(self, value: LazyArray, meta: Any) -> None:
        nbytes = int(value.size) * value.source_itemsize
        if self.warn_bytes is None or not value.is_whole or nbytes <= self.warn_bytes:
            return
        where = meta.get("uri", "an image") if isinstance(meta, dict) else "an image"
        warnings.warn(
            f"ComputeDaskd is about to read the whole of {where}: {nbytes:,} bytes "
            f"({nbytes / 2**30:.2f} GiB), shape {tuple(value.shape)}. Put a spatial crop "
            "(RandLazyCropd, RandSpatialCropd) before ComputeDaskd to read only the crop, or "
            "pass warn_bytes=None if the whole image is meant.",
            WholeImageWarning,
            stacklevel=3,
        )


def _monai_box(value: MetaTensor) -> tuple[int, ...] | None:
    """The box MONAI's crops cut from an eager image, from the tensor's applied operations;
    None when anything else than crops was applied (or nothing was recorded)."""
    ops = list(getattr(value, "applied_operations", []) or [])
    start = [0] * (value.ndim - 1)
    for op in ops:
        cropped = (op.get("extra_info") or {}).get("cropped")
        if cropped is None or len(cropped) != 2 * len(start):
            return None
        start = [s + int(c) for s, c in zip(start, cropped[0::2])]
    return tuple(start)


def _with_box(
    meta: dict[str, Any], box: tuple[int, ...] | None, tracked: bool, size: tuple[int, ...]
) -> dict[str, Any]:
    """``meta`` with the crop box of the computed array (``box``: start in the loaded level's
    grid, known when ``tracked``), in level and level-0 pixels."""
    out = dict(meta)
    if tracked and box is not None:
        start: tuple[int, ...] | None = tuple(int(b) for b in box)
    elif tuple(meta.get("crop_size", ())) == size:
        start = meta.get("crop_start")  # recorded by tlcore's crop, nothing cut since
    else:
        start = None  # cut by something that records no box: unknown, not guessed
    out["crop_start"] = start
    out["crop_size"] = size
    scale = tuple(meta.get("downsampling", ())) or (1.0,) * len(size)
    scale = scale[-len(size) :]
    out["crop_start_level0"] = (
        None if start is None else tuple(round(s * f) for s, f in zip(start, scale))
    )
    out["crop_size_level0"] = tuple(round(n * f) for n, f in zip(size, scale))
    return out


_TENSOR_META = (
    "path", "uri", "reader", "scene", "level", "timepoints", "time_s", "n_timepoints",
    "n_channels", "channels", "pixel_sizes", "image_shape", "crop_start", "crop_size",
    "crop_start_level0", "crop_size_level0", "downsampling",
)  # fmt: skip


def _tensor_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: meta[k] for k in _TENSOR_META if k in meta}
    if "path" in meta:
        out["filename_or_obj"] = meta["path"]  # MONAI's own name for the source
    return out


class TlcoreReader:
    """A MONAI-style image reader description for :class:`LoadImaged`: which tlcore reader
    (None: the registry picks), scene, level, and whether the output stays lazy.

    ``OmeZarrReader(level=1, lazy_load=True)`` is the same with the OME-Zarr reader named.
    """

    reader: str | None = None

    def __init__(
        self,
        level: int = 0,
        lazy_load: bool = True,
        scene: int | str | None = None,
        reader: str | None = None,
        spatial_dims: int = 3,
        timepoint: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.level = level
        self.lazy_load = lazy_load
        self.scene = scene
        self.reader = reader if reader is not None else type(self).reader
        self.spatial_dims = spatial_dims
        self.timepoint = timepoint
        self.storage_options = dict(storage_options or {})


class OmeZarrReader(TlcoreReader):
    """:class:`TlcoreReader` naming the OME-Zarr reader: the guide's
    ``OmeZarrReader(level=..., lazy_load=True)``."""

    reader = "ome-zarr"


class LoadImaged(MapTransform):
    """A drop-in for MONAI's ``LoadImaged`` (same leading signature) that accepts any tlcore
    reader and returns a lazy array. MONAI's own ``LoadImage`` rejects dask outputs.

    ``d[key]`` holds the path; it is replaced by the image (channel-first, lazy unless the
    reader says ``lazy_load=False``), with metadata under ``d["<key>_meta"]``. The sample's
    ``T``, ``C``, ``scene``, ``resolution`` keys apply as for :class:`LoadLazyd`; a timelapse
    with no ``T`` needs ``TlcoreReader(timepoint=...)``. ``dtype`` converts the pixels
    (lazily). ``image_only``, ``ensure_channel_first`` and the meta-dict arguments of MONAI's
    signature are accepted: the output is always channel-first, metadata goes to ``_meta``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reader: TlcoreReader | str | None = None,
        dtype: Any = None,
        meta_keys: Any = None,
        meta_key_postfix: str = "meta_dict",
        overwriting_keys: bool = False,
        image_only: bool = True,
        ensure_channel_first: bool = False,
        simple_keys: bool = False,
        prune_meta_pattern: str | None = None,
        prune_meta_sep: str = ".",
        allow_missing_keys: bool = False,
        expanduser: bool = True,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        spec = reader if isinstance(reader, TlcoreReader) else TlcoreReader(reader=reader)
        self.spec = spec
        self.dtype = dtype
        self.expanduser = expanduser
        self._loaders = {
            key: BioIOImageLoaderd(
                path_key=str(key),
                out_key=str(key),
                lazy_load=spec.lazy_load,
                dtype=dtype,
                spatial_dims=spec.spatial_dims,
                scene=spec.scene,
                level=spec.level,
                timepoint=spec.timepoint,
                reader=spec.reader,
                storage_options=spec.storage_options,
            )
            for key in self.keys
        }

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            loader = self._loaders[key]
            loader.guard = False
            if self.spec.lazy_load:
                # The loader's own check would look for itself in the pipeline: check for us.
                pipeline = enclosing_pipeline(self)
                if pipeline is not None:
                    check_pipeline(self, [key], pipeline)
            path = d[key]
            if self.expanduser and isinstance(path, str) and path.startswith("~"):
                import os

                path = os.path.expanduser(path)
            d = loader({**d, key: path})
        return d
