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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tlcore import cache
from tlcore.errors import TlcoreError
from tlcore.manifest import ManifestRow
from tlcore.sampling import (
    SAMPLING_MODES,
    TimeRange,
    epoch_rows,
    rank_positions,
    resolve_range,
    rng_for,
    sample_timepoints,
)

__all__ = [
    "SampleError",
    "WorkerError",
    "TimelapseDataLoader",
    "TimelapseDataset",
    "TimelapseSampler",
    "Batch",
    "collate_samples",
    "default_transforms",
    "worker_init",
]

#: Sample keys of the one vocabulary shared by dataset, loaders and docs.
SAMPLE_KEYS = ("original_path", "scene", "resolution", "C", "T")


class SampleError(TlcoreError):
    """A sample could not be made: names the manifest row, the file and the epoch position."""


class WorkerError(TlcoreError):
    """A DataLoader worker died or stalled: the run ends with this instead of hanging."""


#: ``on_error`` policies of :class:`TimelapseDataset`.
ON_ERROR = ("raise", "skip")
_log = logging.getLogger("tlcore")


def default_transforms(
    keys: str = "raw",
    spatial_dims: int = 3,
    patch_shape: Sequence[int] | None = None,
    dtype: Any = "float32",
    storage_options: Mapping[str, Any] | None = None,
    align_to_chunks: bool = False,
    chunk_cache: int | None = None,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The pipeline used when none is given: load lazily, crop to ``patch_shape`` (when given;
    on the storage chunk grid with ``align_to_chunks``), compute only the crop (through a
    decoded-chunk cache of ``chunk_cache`` bytes when given)."""
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    load = LoadLazyd(
        keys=keys, spatial_dims=spatial_dims, storage_options=storage_options,
        chunk_cache=chunk_cache,
    )  # fmt: skip
    steps: list[Any] = [load]
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
        rows: the split's manifest rows (:func:`tlcore.manifest.read_manifest`).
        transforms: a callable on the sample dict (a MONAI ``Compose``); its random state is
            reseeded per sample. None: :func:`default_transforms` with ``patch_shape``.
        split: the split's name (part of the seed).
        num_timepoints: timepoints per sample. 1 gives ``T`` as an int, more give a list.
        timepoint_sampling: ``"random"``, ``"sequential"`` or ``"uniform"``
            (:func:`tlcore.sampling.sample_timepoints`).
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

    Indexing: ``dataset[position]`` draws for the dataset's current epoch
    (:meth:`set_epoch`); ``dataset[(epoch, position)]`` for any epoch (what
    :class:`TimelapseSampler` yields, so workers never need to know the epoch). Positions past
    ``len(dataset)`` are valid fresh draws (distributed padding).

    Building the dataset opens no file. A file's metadata is read on the first sample that needs
    it, once per process (:mod:`tlcore.cache`); each row keeps its own time range.
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

    def __len__(self) -> int:
        return self.samples_per_epoch if self.samples_per_epoch is not None else len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """The epoch that ``dataset[position]`` draws for."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_order"] = None
        return state

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
            "original_path": row.path,
            "scene": row.scene,
            "resolution": row.resolution,
            "C": "" if row.channels is None else ",".join(str(c) for c in row.channels),
            "T": ts if self.num_timepoints > 1 else ts[0],
            "T_seconds": times if self.num_timepoints > 1 else times[0],
            "reader_options": dict(row.options),
            "row": row.row,
            "split": self.split,
            "_transform_seed": int(transform_rng.integers(0, 2**31 - 1)),
            "_index": index,
        }
        sample.update(row.extras)
        return sample

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, position = key if isinstance(key, tuple) else (self.epoch, int(key))
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


class TimelapseSampler(DistributedSampler[tuple[int, int]]):
    """Yields ``(epoch, position)`` keys: every position of the epoch once, this rank's share
    when distributed (:func:`tlcore.sampling.rank_positions`).

    The epoch advances by itself after each complete pass, and :meth:`set_epoch` (which
    Lightning calls at each epoch start) sets it. ``skip`` positions of the next pass are left
    out, to resume mid-epoch. It is a ``DistributedSampler`` so that Lightning keeps it instead
    of wrapping it in its own: sharding is done here. The rank and world size come from the
    arguments, else from ``torch.distributed`` when it is initialised, else 0 and 1.
    """

    def __init__(
        self,
        length: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        epoch: int = 0,
    ) -> None:
        # DistributedSampler.__init__ would require an initialised process group.
        self.length = int(length)
        self._num_replicas = num_replicas
        self._rank = rank
        self.epoch = int(epoch)
        self.skip = 0
        self.shuffle = False  # read by Lightning; shuffling is the dataset's, per epoch
        self.drop_last = False

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if self._num_replicas is not None:
            return self._num_replicas
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:  # type: ignore[override]
        if self._rank is not None:
            return self._rank
        dist = torch.distributed
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def positions(self) -> list[int]:
        """This rank's positions of an epoch, in order."""
        return rank_positions(self.length, self.rank, self.num_replicas)

    def __len__(self) -> int:
        return len(self.positions())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        for position in self.positions()[skip:]:
            yield (epoch, position)
        self.epoch = epoch + 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class TimelapseDataLoader(DataLoader[dict[str, Any]]):
    """A DataLoader that can say where it is in an epoch and resume there.

    ``state_dict()`` is ``{"epoch", "batches"}``: the epoch being read and the batches this
    rank has handed out of it (or what ``progress()`` reports: the datamodule passes what the
    trainer really trained on); ``load_state_dict`` makes the next pass start there. Lightning
    saves and restores it with its checkpoints.
    """

    def __init__(
        self,
        dataset: TimelapseDataset,
        progress: Callable[[], Mapping[str, int] | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.progress = progress
        self._batches = 0
        self._epoch = self._sampler().epoch

    def _sampler(self) -> TimelapseSampler:
        sampler = self.sampler
        if not isinstance(sampler, TimelapseSampler):
            raise TypeError("TimelapseDataLoader needs a TimelapseSampler")
        return sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self._sampler()
        self._epoch = sampler.epoch
        self._batches = sampler.skip // max(self.batch_size or 1, 1)
        batches = super().__iter__()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except RuntimeError as exc:
                raise _worker_error(exc, self) from exc
            self._batches += 1
            yield batch
        self._epoch, self._batches = sampler.epoch, 0

    def state_dict(self) -> dict[str, int]:
        """``progress`` (the datamodule's view of what was trained on) wins when it has one."""
        known = self.progress() if self.progress is not None else None
        if known is not None:
            return dict(known)
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        sampler = self._sampler()
        sampler.set_epoch(int(state["epoch"]))
        sampler.skip = int(state["batches"]) * max(self.batch_size or 1, 1)
        self._epoch, self._batches = int(state["epoch"]), int(state["batches"])


def _worker_error(exc: RuntimeError, loader: TimelapseDataLoader) -> RuntimeError | WorkerError:
    """torch's messages for a dead or stalled worker, turned into one that says what to do."""
    text = str(exc)
    dataset = loader.dataset
    split = getattr(dataset, "split", "?")
    where = f"the {split!r} DataLoader ({loader.num_workers} worker(s), batch {loader._batches})"
    if "timed out" in text:
        return WorkerError(
            f"{where}: no batch came back within timeout={loader.timeout:g} s, so the run was "
            "stopped instead of hanging. A read is stalled (unreachable storage, a lock, a "
            "reader that blocks); run with num_workers=0 to see where, or raise the "
            f"datamodule's worker_timeout if reads are really this slow. ({text})"
        )
    if "exited unexpectedly" in text or "killed by signal" in text:
        return WorkerError(
            f"{where}: a worker died ({text.splitlines()[0]}). Killed by the system usually "
            "means out of memory: `tlcore validate MANIFEST --batch-size N` estimates the "
            "memory per worker; lower num_workers or batch_size, or run with num_workers=0 to "
            "see a crash in the main process."
        )
    return exc


def worker_init(worker_id: int) -> None:
    """Set up a DataLoader worker: one torch thread, dask's synchronous scheduler, no file
    handles inherited from the parent, global RNGs seeded per worker (for user code that
    uses them; tlcore's own draws do not), and tlcore's zarr decoder sharing the cores with
    the other workers (``TLCORE_ZARRFAST_THREADS``, unless set: cores / workers)."""
    import gc
    import random

    import dask

    from tlcore import zarrfast

    info = torch.utils.data.get_worker_info()
    workers = info.num_workers if info is not None else 1
    # Workers x decode threads above the core count only adds switching (measured: about 10%
    # more CPU per crop with 2 workers x 2 threads on 2 cores).
    os.environ.setdefault(
        zarrfast.THREADS_ENV, str(max(1, zarrfast.default_threads() // max(1, workers)))
    )

    # The parent's objects stay untouched by this worker's collections, so its pages stay
    # shared instead of being copied into every worker.
    gc.freeze()
    torch.set_num_threads(1)
    dask.config.set(scheduler="synchronous")
    cache.clear()
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)  # for user transforms that use numpy's global state


def _stack(key: str, values: list[torch.Tensor], n_t: int | None, fold_time: bool) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise ValueError(
            f"collate: {key!r} has different shapes in one batch {sorted(shapes)}: crop to a "
            "fixed patch_shape (or pad) before batching"
        )
    if n_t is not None:
        values = [v.reshape(n_t, v.shape[0] // n_t, *v.shape[1:]) for v in values]
    batch = torch.stack(values)
    if n_t is not None and fold_time:
        batch = batch.reshape(-1, *batch.shape[2:])
    return batch


#: Tensors up to this size travel from a worker to the main process inside the pickle.
INLINE_TENSOR_BYTES = 64 * 2**10


class Batch(dict[str, Any]):
    """A collated batch: a plain ``dict`` of tensors and lists to its users.

    Sent from a DataLoader worker, its small tensors (``T``, ``row``, the extra columns...: at
    most :data:`INLINE_TENSOR_BYTES` each) travel inside the pickle instead of through one
    shared-memory file each: every shared-memory tensor costs the main process a file
    descriptor round trip to the worker, measured at about 0.25 ms, so eight small ones cost
    more than moving a 2 MiB crop. Image tensors still go through shared memory; a MONAI
    ``MetaTensor`` keeps its type and metadata, with its small ``affine`` inline too.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_batch, ({k: _inline(v) for k, v in self.items()},))


class _InlineTensor:
    """A small CPU tensor pickled by value (numpy bytes), rebuilt as a tensor."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_tensor, (self.array,))


class _InlineMetaTensor:
    """A MONAI ``MetaTensor`` pickled as its plain tensor (shared memory when large) plus its
    metadata with small tensors by value (its 4 x 4 ``affine`` would take a shared-memory
    file of its own), rebuilt as a ``MetaTensor``."""

    __slots__ = ("applied", "is_batch", "meta", "tensor")

    def __init__(self, value: Any) -> None:
        self.tensor = value.as_tensor()
        self.meta = {k: _inline(v) for k, v in value.meta.items()}
        self.applied = list(value.applied_operations)
        self.is_batch = bool(value.is_batch)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_meta_tensor, (self.tensor, self.meta, self.applied, self.is_batch))


def _unpickle_meta_tensor(
    tensor: torch.Tensor, meta: dict[str, Any], applied: list[Any], is_batch: bool
) -> Any:
    from monai.data import MetaTensor

    out = MetaTensor(tensor, meta=meta, applied_operations=applied)
    out.is_batch = is_batch
    return out


def _inline(value: Any) -> Any:
    if type(value).__name__ == "MetaTensor" and type(value).__module__.startswith("monai."):
        return _InlineMetaTensor(value)
    if (
        type(value) is torch.Tensor  # subclasses (MetaTensor) keep their own pickling
        and value.device.type == "cpu"
        and not value.requires_grad
        and value.dtype not in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)
        and value.numel() * value.element_size() <= INLINE_TENSOR_BYTES
    ):
        return _InlineTensor(value.numpy())
    return value


def _unpickle_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


def _unpickle_batch(items: dict[str, Any]) -> Batch:
    return Batch(items)


def collate_samples(batch: Sequence[Mapping[str, Any]], fold_time: bool = False) -> Batch:
    """Batch samples: images ``B, C, (Z,) Y, X`` for one timepoint per sample and
    ``B, T, C, (Z,) Y, X`` for several (or ``B*T, C, ...`` with ``fold_time``); ``T`` as a
    ``B`` or ``B, T`` integer tensor and ``T_seconds`` likewise in float64 (NaN where unknown);
    numbers as tensors; strings, metadata dicts and anything else as lists. The result is a
    :class:`Batch`, a ``dict`` that crosses from workers to the main process cheaply."""
    keys = list(batch[0])
    out = Batch()
    for key in keys:
        values = [sample[key] for sample in batch]
        first = values[0]
        if isinstance(first, torch.Tensor):
            meta = batch[0].get(f"{key}_meta")
            n_t = meta.get("n_timepoints") if isinstance(meta, Mapping) else None
            out[key] = _stack(key, list(values), n_t, fold_time)
        elif isinstance(first, np.ndarray):
            out[key] = _stack(key, [torch.as_tensor(v) for v in values], None, fold_time)
        elif key == "T":
            out[key] = torch.as_tensor(values, dtype=torch.int64)
        elif key == "T_seconds":
            out[key] = torch.as_tensor(values, dtype=torch.float64)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = torch.as_tensor(values)
        else:
            out[key] = list(values)
    return out
