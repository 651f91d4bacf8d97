"""The timelapse dataset: one entry per manifest row, timepoints drawn on the fly.

A sample is a pure function of ``(seed, split, epoch, position)``: the row it reads, the
timepoints it draws and the random state of its transforms all come from that tuple, never from
a random state living in a worker. So batches are the same with any number of workers, every
epoch draws new timepoints, distributed ranks share an epoch without overlap, and a run resumed
mid-epoch continues the same sequence. Imports torch (and MONAI's transforms when no pipeline is
given), so ``import tlcore`` does not import this module.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from tlcore import vocabulary
from tlcore.errors import TlcoreError
from tlcore.io.prefetch import DEFAULT_BUDGET
from tlcore.io.source import is_remote_path
from tlcore.readers import cache
from tlcore.sampling.draws import (
    SAMPLING_MODES,
    TimeRange,
    epoch_rows,
    resolve_range,
    rng_for,
    sample_timepoints,
)
from tlcore.sampling.images import image_sample_fields
from tlcore.sampling.manifest import ManifestRow
from tlcore.training.prefetch import LoaderPlan, Prefetcher

#: Default bytes of fetched-ahead chunks each process holds (``prefetch_bytes``).
DEFAULT_PREFETCH_BYTES = DEFAULT_BUDGET

__all__ = ["SampleError", "TimelapseDataset", "default_transforms"]

#: The keys of a sample (:data:`tlcore.vocabulary.SAMPLE_KEYS`).
SAMPLE_KEYS = vocabulary.SAMPLE_KEYS


class SampleError(TlcoreError):
    """A sample could not be made: names the manifest row, the file and the epoch position."""


#: ``on_error`` policies of :class:`TimelapseDataset`.
ON_ERROR = ("raise", "skip")
_log = logging.getLogger("tlcore")


def default_transforms(
    keys: str | Sequence[str] = vocabulary.IMAGE,
    spatial_dims: int = 3,
    patch_shape: Sequence[int] | None = None,
    dtype: Any = "float32",
    storage_options: Mapping[str, Any] | None = None,
    align_to_chunks: bool = False,
    chunk_cache: int | None = None,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The pipeline used when none is given: load lazily, crop to ``patch_shape`` (when given;
    on the storage chunk grid with ``align_to_chunks``), compute only the crop (through a
    decoded-chunk cache of ``chunk_cache`` bytes when given).

    Several ``keys`` (a row with several images): each is loaded from its own sample fields
    (:func:`tlcore.vocabulary.image_fields`) at the same timepoints, all get one crop box."""
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    names = [keys] if isinstance(keys, str) else list(keys)
    steps: list[Any] = []
    for key in names:
        fields: dict[str, Any] = dict(vocabulary.image_fields(key)) if len(names) > 1 else {}
        steps.append(
            LoadLazyd(
                keys=key, spatial_dims=spatial_dims, storage_options=storage_options,
                chunk_cache=chunk_cache, **fields,
            )
        )  # fmt: skip
    keys = names
    if patch_shape is not None:
        crop = RandLazyCropd(
            keys=keys, roi_size=tuple(patch_shape), align_to_chunks=align_to_chunks
        )
        steps.append(crop)
    steps.append(ComputeDaskd(keys=keys, dtype=dtype))
    return Compose(steps)  # type: ignore[no-any-return]


def _share_storage_options(transforms: Any, options: Mapping[str, Any]) -> None:
    """Give the run's storage options (credentials, endpoint) to every tlcore loader in the
    pipeline that was built without its own, so a config need not repeat them per loader."""
    if not options:
        return
    from tlcore.transforms import LoadLazyd

    for step in getattr(transforms, "transforms", [transforms]):
        if isinstance(step, LoadLazyd) and not step.storage_options:
            step.storage_options = dict(options)
        elif hasattr(step, "transforms") and step is not transforms:
            _share_storage_options(step, options)


class TimelapseDataset(Dataset[dict[str, Any]]):
    """One entry per manifest row; each sample draws ``num_timepoints`` timepoints of its row.

    Args:
        rows: the split's manifest rows (:func:`tlcore.sampling.manifest.read_manifest`).
        transforms: a callable on the sample dict (a MONAI ``Compose``); its random state is
            reseeded per sample. None: :func:`default_transforms` with ``patch_shape``.
        split: the split's name (part of the seed).
        num_timepoints: timepoints per sample. 1 gives ``T`` as an int, more give a list.
        timepoint_sampling: ``"random"``, ``"sequential"`` or ``"uniform"``
            (:func:`tlcore.sampling.draws.sample_timepoints`).
        seed: the run's seed.
        samples_per_epoch: the epoch's length in samples (not batches); None: one per row.
        shuffle: a new row order and new draws every epoch (training). False: rows in manifest
            order and the same draws every epoch (validation and test are comparable across
            epochs).
        spatial_dims: 3 (C, Z, Y, X) or 2 (C, Y, X), for the default pipeline.
        patch_shape: the default pipeline's random crop; None loads whole timepoints.
        crops_per_timepoint: draw ``k`` samples (crops) from each drawn (row, timepoints):
            positions ``k*g`` to ``k*g + k - 1`` share their row and timepoints and differ in
            their transforms' randomness. With a batch size that is a multiple of ``k``, one
            worker makes all of them, so a decoded-chunk cache (``chunk_cache``) pays off.
        align_to_chunks: the default pipeline's crops start or end on the storage chunk grid
            (see :func:`default_transforms`).
        chunk_cache: bytes of decoded chunks each process keeps, for the default pipeline.
        independent_crops: with several timepoints, run the pipeline once per timepoint (its
            own random crop and augmentation each) instead of one box for all.
        storage_options: fsspec options for every path (credentials, ``endpoint_url``...);
            also given to every ``LoadLazyd`` of ``transforms`` that has none of its own.
        on_error: ``"raise"``: a sample that cannot be made raises :class:`SampleError` naming
            the file, row, scene and timepoints. ``"skip"``: it is replaced by a redraw (another
            row and timepoints, drawn from ``(seed, split, epoch, position, attempt)``, so the
            epoch is the same with any number of workers); the sample's ``"skipped"`` key counts
            the failed attempts and ``"skipped_paths"`` names them (``;``-separated), skips are
            counted per file in :attr:`skips` (per process) and logged, and a file that failed
            ``drop_after`` times is dropped: later draws of it are skipped without reading
            (the same outcome, since its failure repeats), with a warning.
        max_redraws: with ``"skip"``, the redraws tried before giving up with SampleError.
        drop_after: with ``"skip"``, failures after which a file is dropped in this process.
        prefetch: fetch the encoded chunks of the samples this process makes next while it
            decodes the current one (:mod:`tlcore.training.prefetch`; remote OME-Zarr and TIFF).
            None (default): on when a row's image is remote. Only timing changes, never a
            pixel or a draw. Needs the DataLoader's plan (:meth:`set_plan`, which
            :class:`~tlcore.training.loader.TimelapseDataLoader` calls).
        prefetch_bytes: the bytes of fetched-ahead data each process may hold.

    Indexing: ``dataset[position]`` draws for the dataset's current epoch
    (:meth:`set_epoch`); ``dataset[(epoch, position)]`` for any epoch (what
    :class:`TimelapseSampler` yields, so workers never need to know the epoch). Positions past
    ``len(dataset)`` are valid fresh draws (distributed padding).

    Building the dataset opens no file. A file's metadata is read on the first sample that needs
    it, once per process (:mod:`tlcore.readers.cache`); each row keeps its own time range.
    """

    def __init__(
        self,
        rows: Sequence[ManifestRow],
        transforms: Callable[[dict[str, Any]], Any] | None = None,
        *,
        split: str = "train",
        num_timepoints: int = 1,
        timepoint_sampling: str = "random",
        seed: int = 42,
        samples_per_epoch: int | None = None,
        shuffle: bool | None = None,
        spatial_dims: int = 3,
        patch_shape: Sequence[int] | None = None,
        independent_crops: bool = False,
        crops_per_timepoint: int = 1,
        align_to_chunks: bool = False,
        chunk_cache: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        on_error: str = "raise",
        max_redraws: int = 16,
        drop_after: int = 3,
        prefetch: bool | None = None,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if timepoint_sampling not in SAMPLING_MODES:
            raise ValueError(
                f"timepoint_sampling must be one of {SAMPLING_MODES}, got {timepoint_sampling!r}"
            )
        if int(num_timepoints) < 1:
            raise ValueError(f"num_timepoints must be at least 1, got {num_timepoints}")
        if not rows:
            raise ValueError(f"the {split!r} split has no manifest rows")
        if samples_per_epoch is not None and int(samples_per_epoch) < 1:
            raise ValueError(f"samples_per_epoch must be at least 1, got {samples_per_epoch}")
        self.rows = list(rows)
        self.split = split
        self.num_timepoints = int(num_timepoints)
        self.timepoint_sampling = timepoint_sampling
        self.seed = int(seed)
        self.samples_per_epoch = None if samples_per_epoch is None else int(samples_per_epoch)
        self.shuffle = split == "train" if shuffle is None else bool(shuffle)
        self.spatial_dims = spatial_dims
        self.patch_shape = None if patch_shape is None else tuple(int(n) for n in patch_shape)
        self.independent_crops = independent_crops
        if int(crops_per_timepoint) < 1:
            raise ValueError(f"crops_per_timepoint must be at least 1, got {crops_per_timepoint}")
        self.crops_per_timepoint = int(crops_per_timepoint)
        self.storage_options = dict(storage_options or {})
        self.transforms = (
            transforms
            if transforms is not None
            else default_transforms(
                [self.rows[0].key, *self.rows[0].images],
                spatial_dims=spatial_dims,
                patch_shape=self.patch_shape,
                storage_options=self.storage_options,
                align_to_chunks=align_to_chunks,
                chunk_cache=chunk_cache,
            )
        )
        _share_storage_options(self.transforms, self.storage_options)
        self.on_error = on_error
        self.max_redraws = int(max_redraws)
        self.drop_after = int(drop_after)
        #: failed samples per file, in this process (each DataLoader worker has its own)
        self.skips: Counter[str] = Counter()
        #: files dropped after ``drop_after`` failures, in this process
        self.dropped: set[str] = set()
        self.epoch = 0
        self._order: tuple[int, np.ndarray] | None = None
        self._ranges: dict[int, TimeRange] = {}
        if int(prefetch_bytes) < 0:
            raise ValueError(f"prefetch_bytes must be >= 0, got {prefetch_bytes}")
        self.prefetch = any(_is_remote(r) for r in self.rows) if prefetch is None else prefetch
        self.prefetch_bytes = int(prefetch_bytes)
        #: the DataLoader's plan (:meth:`set_plan`): which positions each worker makes next
        self.plan: LoaderPlan | None = None
        self._prefetcher: Prefetcher | None = None

    def __len__(self) -> int:
        return self.samples_per_epoch if self.samples_per_epoch is not None else len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that ``dataset[position]`` draws for."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_order"] = None
        state["_prefetcher"] = None  # a thread of this process: each process starts its own
        # The files this process opened travel along (tlcore.readers.cache.Handover): a worker
        # unpickling the dataset reads no metadata before its first crop's chunks.
        paths = [p for r in self.rows for p in (r.path, *(i.path for i in r.images.values()))]
        state["_handover"] = cache.handover(paths)
        return state

    def set_plan(self, plan: LoaderPlan | None) -> None:
        """The DataLoader's plan (batch size, this rank's share, a resumed epoch's skip), from
        which each worker knows the positions it makes next (prefetch)."""
        self.plan = plan
        self.stop_prefetch()

    def stop_prefetch(self) -> None:
        """End this process's prefetch thread (it also ends after a few idle seconds)."""
        found, self._prefetcher = self._prefetcher, None
        if found is not None and found.pid == os.getpid():
            found.stop()

    def _prefetch_begin(self, epoch: int, position: int) -> tuple[Prefetcher, int] | None:
        if not self.prefetch or self.plan is None or not self.prefetch_bytes:
            return None
        found = self._prefetcher
        if found is None or found.pid != os.getpid():  # a forked child starts its own
            found = self._prefetcher = Prefetcher(self, self.plan, self.prefetch_bytes)
        ordinal = found.begin(epoch, position)
        return None if ordinal is None else (found, ordinal)

    # -- the draw ------------------------------------------------------------------------------
    def row_at(self, epoch: int, position: int) -> int:
        """The index into ``rows`` read at ``position`` of ``epoch`` (positions past the end,
        distributed padding, repeat the epoch's rows with fresh draws)."""
        epoch = epoch if self.shuffle else 0
        groups = -(-len(self) // self.crops_per_timepoint)
        if self._order is None or self._order[0] != epoch:
            order = epoch_rows(len(self.rows), groups, self.seed, self.split, epoch, self.shuffle)
            self._order = (epoch, order)
        return int(self._order[1][(position // self.crops_per_timepoint) % groups])

    def time_range(self, index: int) -> TimeRange:
        """The row's timepoints, resolved against its file (opens the file's metadata once)."""
        found = self._ranges.get(index)
        if found is None:
            row = self.rows[index]
            image = self._image(row)
            try:
                found = resolve_range(row.start, row.stop, image.shape[0])
            except ValueError as exc:
                raise SampleError(f"{row.where()}: {exc}; fix start/stop") from None
            self._ranges[index] = found
        return found

    def _image(self, row: ManifestRow) -> Any:
        options = {**self.storage_options, **row.options}
        return cache.open_cached(row.path, row.scene, row.resolution, options or None)

    def draw(self, epoch: int, position: int, attempt: int = 0) -> dict[str, Any]:
        """The sample dict before transforms: the row's keys, the drawn ``T``, the times of
        those timepoints in seconds (NaN where the file records none) and the extra columns.

        ``attempt`` > 0 is the ``attempt``-th redraw of a failed sample (``on_error="skip"``):
        a row and timepoints drawn from ``(seed, split, epoch, position, attempt)``."""
        epoch_key = epoch if self.shuffle else 0
        # The k crops of one (row, timepoints) share this draw; each has its own transforms.
        group = position // self.crops_per_timepoint
        rng = rng_for(self.seed, self.split, epoch_key, group, attempt)
        index = self.row_at(epoch, position) if attempt == 0 else int(rng.integers(len(self.rows)))
        transform_rng = rng_for(self.seed, self.split, epoch_key, position, 1_000_000 + attempt)
        row = self.rows[index]
        try:
            time_range = self.time_range(index)
            ts = sample_timepoints(rng, time_range, self.num_timepoints, self.timepoint_sampling)
            seconds = self._image(row).time_axis.seconds()
        except SampleError:
            raise
        except (TlcoreError, OSError, ValueError) as exc:
            raise SampleError(f"{row.where()} scene {row.scene!r}: {exc}") from exc
        times = [math.nan if seconds is None else float(seconds[t]) for t in ts]
        sample: dict[str, Any] = {
            vocabulary.PATH: row.path,
            vocabulary.SCENE: row.scene,
            vocabulary.RESOLUTION: row.resolution,
            vocabulary.CHANNELS: ""
            if row.channels is None
            else ",".join(str(c) for c in row.channels),
            vocabulary.TIMEPOINTS: ts if self.num_timepoints > 1 else ts[0],
            vocabulary.TIME_SECONDS: times if self.num_timepoints > 1 else times[0],
            vocabulary.OPTIONS: dict(row.options),
            vocabulary.ROW: row.row,
            vocabulary.SPLIT: self.split,
            "_transform_seed": int(transform_rng.integers(0, 2**31 - 1)),
            "_index": index,
        }
        if row.images:
            sample.update(image_sample_fields(row))
        sample.update(row.extras)
        return sample

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, position = key if isinstance(key, tuple) else (self.epoch, int(key))
        ticket = self._prefetch_begin(epoch, position)
        try:
            return self._get(epoch, position)
        finally:
            if ticket is not None:
                ticket[0].done(ticket[1])

    def _get(self, epoch: int, position: int) -> dict[str, Any]:
        if self.on_error == "raise":
            return self._make(epoch, position, 0)
        failed: list[str] = []
        last: SampleError | None = None
        for attempt in range(self.max_redraws + 1):
            if attempt > 0:
                index = int(
                    rng_for(self.seed, self.split, epoch if self.shuffle else 0, position, attempt)
                    .integers(len(self.rows))
                )  # fmt: skip
            else:
                index = self.row_at(epoch, position)
            path = self.rows[index].path
            if path in self.dropped:  # it failed before and would again: same outcome, no read
                failed.append(path)
                continue
            try:
                sample = self._make(epoch, position, attempt)
            except SampleError as exc:
                last = exc
                failed.append(path)
                self._count_skip(path, exc)
                continue
            sample["skipped"] = len(failed)
            sample["skipped_paths"] = ";".join(failed)
            return sample
        raise SampleError(
            f"sample {position} of epoch {epoch} ({self.split}): the drawn row and "
            f"{self.max_redraws} redraws all failed (files: {sorted(set(failed))}); last "
            f"error: {last}"
        ) from last

    def _count_skip(self, path: str, exc: SampleError) -> None:
        self.skips[path] += 1
        _log.warning("skipped a sample (%s skips of this file): %s", self.skips[path], exc)
        if self.skips[path] >= self.drop_after and path not in self.dropped:
            self.dropped.add(path)
            warnings.warn(
                f"{path} failed {self.skips[path]} times and is dropped: its rows are skipped "
                f"from now on (in this process). Last error: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _make(self, epoch: int, position: int, attempt: int) -> dict[str, Any]:
        sample = self.draw(epoch, position, attempt)
        seed = sample.pop("_transform_seed")
        row = self.rows[sample.pop("_index")]
        try:
            if self.independent_crops and self.num_timepoints > 1:
                return self._per_timepoint(sample, seed)
            return self._apply(sample, seed)
        except Exception as exc:
            cause, step = _root_cause(exc)
            raise SampleError(
                f"{row.where()}: making sample {position} of epoch {epoch} ({self.split}, "
                f"scene {row.scene!r}, T={sample['T']}) failed{step}: {type(cause).__name__}: "
                f"{cause}"
            ) from exc

    def _apply(self, sample: dict[str, Any], seed: int) -> dict[str, Any]:
        set_state = getattr(self.transforms, "set_random_state", None)
        if set_state is not None:
            set_state(seed=seed)
        out = self.transforms(sample)
        if not isinstance(out, dict):
            raise TypeError(
                f"the transforms returned {type(out).__name__}, not a dict: a pipeline that "
                "returns several samples per item (RandCropByPosNegLabeld with num_samples>1) "
                "is not supported here"
            )
        return out

    def _per_timepoint(self, sample: dict[str, Any], seed: int) -> dict[str, Any]:
        """Run the pipeline once per timepoint, then fold the results time-major into the
        channel axis, as one shared box would be."""
        ts, times = sample["T"], sample["T_seconds"]
        outs = [
            self._apply({**sample, "T": t, "T_seconds": s}, seed + k)
            for k, (t, s) in enumerate(zip(ts, times))
        ]
        merged = dict(outs[0])
        merged["T"], merged["T_seconds"] = ts, times
        for key, value in outs[0].items():
            if isinstance(value, torch.Tensor) and f"{key}_meta" in merged:
                merged[key] = torch.cat([o[key] for o in outs], dim=0)
                meta = dict(merged[f"{key}_meta"])
                meta.update(
                    timepoints=ts,
                    time_s=times,
                    n_timepoints=len(ts),
                    per_timepoint=[o[f"{key}_meta"] for o in outs],
                )
                merged[f"{key}_meta"] = meta
        return merged


def _is_remote(row: ManifestRow) -> bool:
    """Whether an image of ``row`` is read over the network (a URL other than ``file://``)."""
    paths = [row.path, *(str(getattr(i, "path", "")) for i in getattr(row, "images", {}).values())]
    return any(is_remote_path(str(p)) for p in paths)


def _root_cause(exc: BaseException) -> tuple[BaseException, str]:
    """MONAI wraps a failing transform's error in ``RuntimeError("applying transform ...")``:
    unwrap it, and name the transform."""
    step = ""
    while (
        isinstance(exc, RuntimeError)
        and str(exc).startswith("applying transform")
        and exc.__cause__ is not None
    ):
        name = str(exc).split("<", 1)[-1].split(" object", 1)[0].rsplit(".", 1)[-1]
        step = f" in {name}"
        exc = exc.__cause__
    return exc, step
