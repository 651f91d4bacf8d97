"""LoadLazyd: a manifest row's image opened lazily, one sample's timepoints and channels as a
channel-first view of the reader (nothing read).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from tlcore import vocabulary
from tlcore.images import LazyImage
from tlcore.io.source import is_reader_option
from tlcore.lazy import chunkcache
from tlcore.lazy.array import track
from tlcore.lazy.reader import reader_of
from tlcore.lazy.regions import ReaderView
from tlcore.readers.cache import open_cached
from tlcore.sampling.manifest import parse_channels
from tlcore.transforms.arrays import (
    manifest_cell,
)
from tlcore.transforms.guards import check_pipeline, enclosing_pipeline
from tlcore.transforms.meta import meta_key


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

    Opened files are cached per process (:mod:`tlcore.readers.cache`), so a file's metadata is read
    once per worker, not once per sample. Metadata goes to ``d["<key>_meta"]``: path, reader,
    scene, level, timepoints, their times in seconds (None where unknown), channels, pixel
    sizes, the full image shape and the crop box (updated by the crops).

    The lazy output is a :class:`tlcore.lazy.array.LazyArray`: it remembers its place in the
    image through any spatial crop, MONAI's included, so :class:`ComputeDaskd` reports the box.
    On the first sample the loader checks the pipeline it runs in
    (:mod:`tlcore.transforms.guards`): a transform that needs pixels placed before ``ComputeDaskd``
    raises :class:`tlcore.transforms.guards.LazyPipelineError` naming it and the fix.

    ``chunk_cache``: None reads through the reader directly; a byte count reads whole storage
    chunks through this process's decoded-chunk cache of that size (several crops of one
    timepoint decode a shared chunk once), and 0 counts decoded chunks without caching
    (:data:`tlcore.lazy.chunkcache.stats`: read amplification, counted).
    """

    def __init__(
        self,
        keys: KeysCollection = "raw",
        path_key: str = vocabulary.PATH,
        scene_key: str = vocabulary.SCENE,
        level_key: str = vocabulary.RESOLUTION,
        timepoint_key: str = vocabulary.TIMEPOINTS,
        channel_key: str = vocabulary.CHANNELS,
        options_key: str = vocabulary.OPTIONS,
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
        #: how errors name this loader and its ``timepoint`` argument: what the user wrote
        #: (``LoadImaged`` sets them to its reader's, ``OmeZarrReader(timepoint=...)``)
        self.name = type(self).__name__
        self.timepoint_argument = f"timepoint= to {self.name}"

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
        image's array is not a plain :class:`tlcore.lazy.reader.ArrayReader` array)."""
        if self.spatial_dims == 2 and image.shape[2] != 1:
            raise ValueError(
                f"{self.name}: spatial_dims=2 but {image.uri} scene {image.scene!r} has "
                f"Z={image.shape[2]}; use spatial_dims=3"
            )
        reader = reader_of(data)
        if reader is not None:
            # One view of the reader: no dask indexing layer over every chunk of the
            # timepoint, and its crops are read as one region (tlcore.lazy.compute).
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
                f"{self.name}: the sample has no {self.path_key!r} key: {sorted(map(str, d))}"
            )
        path = d[self.path_key]
        scene = manifest_cell(d.get(self.scene_key), self.scene)
        level = int(manifest_cell(d.get(self.level_key), self.level))
        options = d.get(self.options_key) or None
        image = self.open(path, scene, level, options)
        merged_options = {**self.storage_options, **(options or {})} or None
        t = manifest_cell(d.get(self.timepoint_key), self.timepoint)
        if t is None:
            if image.shape[0] != 1:
                raise ValueError(
                    f"{self.name}: {image.uri} has {image.shape[0]} timepoints and the sample "
                    f"names none: set {self.timepoint_key!r} in the sample (the dataset does) "
                    f"or pass {self.timepoint_argument}"
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
                    f"{self.name}: {image.uri} scene {image.scene!r} has no label image {name!r}; "
                    f"it has {sorted(image.labels)}"
                )
            label = image.labels[name]
            label_array, label_view = self._select(label, image, t, None)
            d[key] = track(label_array, view=label_view)
            d[meta_key(key)] = {**meta, "label": name, "n_channels": int(label.shape[1])}
        return d


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
        from tlcore.readers.api import levels

        found = tuple(
            float(f) for f in levels(path, image.scene, storage_options=options)[image.level]
            .downsampling[2:]
        )  # fmt: skip
        with _levels_lock:
            _level_scales[key] = found
    return found
