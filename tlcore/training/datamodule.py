"""``RandomTimelapseDatamodule``: train on many timelapse files, one dataset entry per file,
random timepoints drawn on the fly, batches that are reproducible across workers, epochs,
ranks and restarts. Imports Lightning and torch; ``tlcore.RandomTimelapseDatamodule`` loads it
on first use."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from lightning.pytorch import LightningDataModule

from tlcore import vocabulary
from tlcore.sampling.manifest import SPLITS, Columns, ManifestRow, read_manifest
from tlcore.training.collate import collate_samples
from tlcore.training.dataset import DEFAULT_PREFETCH_BYTES, TimelapseDataset
from tlcore.training.loader import TimelapseDataLoader
from tlcore.training.sampler import TimelapseSampler
from tlcore.training.workers import worker_init

__all__ = ["RandomTimelapseDatamodule"]

_log = logging.getLogger("tlcore")

_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


def image_column_specs(
    image_columns: Mapping[str, str],
    channel_columns: Mapping[str, str] | None,
    per_key: Mapping[str, Mapping[str, str] | None],
    shared: Mapping[str, str],
) -> dict[str, dict[str, str]]:
    """``{key: {"path": column, "channel": column, ...}}`` for every image of a row: the main
    (first) key falls back to the row's columns, the others share scene, resolution and
    options (not channels) unless given their own."""
    if not image_columns:
        raise ValueError("image_columns needs at least one {key: column}")
    keys = list(image_columns)
    main_channel = {keys[0]: shared["channel"]}
    channels = dict(channel_columns) if channel_columns is not None else main_channel
    column_maps = [channels, *(m or {} for m in per_key.values())]
    unknown = [k for m in column_maps for k in m if k not in keys]
    if unknown:
        raise ValueError(f"columns given for keys {unknown} that image_columns {keys} lacks")
    out: dict[str, dict[str, str]] = {}
    for i, key in enumerate(keys):
        spec = {"path": str(image_columns[key])}
        if key in channels:
            spec["channel"] = channels[key]
        for name, given in per_key.items():
            if given and key in given:
                spec[name] = given[key]
            elif i == 0:
                spec[name] = shared[name]
        out[key] = spec
    return out


def _per_split(value: Any, split: str) -> Any:
    """A setting given once for every split or as ``{train: ..., val: ..., test: ...}``."""
    if isinstance(value, Mapping) and any(str(k) in SPLITS for k in value):
        return value.get(split)
    return value


class RandomTimelapseDatamodule(LightningDataModule):
    """Lightning datamodule over a manifest of timelapse files.

    Args:
        path: the manifest: a CSV path or URL with a split column; ``{train: csv, val: csv,
            test: csv}``; ``{dict_meta: {column: [values]}}``; or a pandas DataFrame
            (:func:`tlcore.sampling.manifest.read_manifest`). Relative image paths resolve against
            the CSV's folder.
        transforms: the sample pipeline, one for every split or ``{train: ..., val: ...,
            test: ...}``. Items reach it as ``{"original_path", "scene", "resolution", "C",
            "T", "T_seconds", "row", "split", <extra columns>}``; start it with
            :class:`tlcore.LoadLazyd` or :class:`tlcore.BioIOImageLoaderd` and compute with
            :class:`tlcore.ComputeDaskd`. None: load, crop to ``patch_shape``, compute to float32
            under ``"raw"``.
        split_column: the column naming each row's split (``train``/``val``/``test``); None
            puts every row in ``train``. Ignored for one-manifest-per-split.
        num_timepoints: timepoints per sample; with more than one, images are batched
            ``B, T, C, (Z,) Y, X`` (``fold_time``: ``B*T, C, ...``) and ``T`` is ``B, T``.
        timepoint_sampling: ``"random"`` (distinct, sorted), ``"sequential"`` (a contiguous
            window at a random start) or ``"uniform"`` (evenly spaced, random phase). A row whose
            range holds fewer than ``num_timepoints`` timepoints is an error naming the row.
        spatial_dims: 3 (C, Z, Y, X) or 2 (C, Y, X; the files must have Z == 1), for the
            default pipeline.
        seed: every draw (row order, timepoints, transform randomness) derives from it, the
            split, the epoch and the sample's position, nothing else.
        samples_per_epoch: samples (not batches, unlike the cyto_dl guide's wording) per epoch,
            one number or per split; None: one per manifest row. More than the rows revisits
            them with new timepoints; fewer takes a random subset each epoch.
        extra_columns: manifest columns carried into the batch (numbers as tensors, text as
            lists of strings).
        img_path_column: the column of image paths or URLs.
        channel_column: the column of channels (``0``, ``"0,2"``, names; empty: all).
        scene_column: the column of scenes (an index or an id; default 0).
        resolution_column: the column of pyramid levels (default 0).
        time_start_column: the column of first timepoints (default 0).
        time_stop_column: the column of stop timepoints: exclusive, and -1 or empty means to
            the end.
        image_columns: rows with several images (pairs: an input and its target, a
            segmentation, a deconvolved copy): ``{key: column}``, the first key the main image
            (default ``{"raw": img_path_column}``). Every image of a row is read at the same
            timepoints on the same grid; the default pipeline loads each key, crops all with
            one box and computes them, and ``<key>_meta`` records each image's own path. A user
            pipeline finds each image's fields as ``<key>_path``, ``<key>_scene``,
            ``<key>_resolution``, ``<key>_C``, ``<key>_reader_options``
            (``LoadLazyd(keys=key, **tlcore.vocabulary.image_fields(key))``).
        channel_columns: ``{key: column}`` of channels; a key absent takes every channel
            (default ``{main key: channel_column}``).
        scene_columns: ``{key: column}`` of scenes; an image without one uses the row's
            ``scene_column``.
        resolution_columns: ``{key: column}`` of pyramid levels; an image without one uses the
            row's ``resolution_column``.
        options_columns: ``{key: column}`` of reader options; an image without one uses the
            row's ``options_column``.
        options_column: per-file reader options (``czi_tiles=true``, ``lif_mosaic=tiles``, a
            TIFF's dimension order...), as ``key=value; key=value`` or a JSON object; merged
            over ``storage_options`` for that file.
        patch_shape: the default pipeline's random crop (Z, Y, X or Y, X); None loads whole
            timepoints (small images only).
        crops_per_timepoint: samples drawn from each opened (file, timepoints) before moving
            on: files are shuffled, then ``k`` crops within one; make ``batch_size`` a multiple
            of ``k`` so one worker decodes their shared chunks once (with ``chunk_cache``).
        align_to_chunks: the default pipeline's crops start or end on the storage chunk grid
            (fewer bytes decoded per crop).
        chunk_cache: bytes of decoded storage chunks each process keeps (default pipeline).
        independent_crops: with several timepoints, crop (and augment) each on its own; by
            default one box applies to every timepoint of a sample.
        fold_time: fold the time axis into the batch axis.
        storage_options: fsspec options for the manifest and the images.
        batch_size: samples per batch, for every DataLoader. Shuffling is for ``train`` only;
            ``val`` and ``test`` draw the same samples every epoch.
        num_workers: DataLoader worker processes.
        pin_memory: passed to every DataLoader.
        persistent_workers: passed to every DataLoader.
        multiprocessing_context: the workers' start method (``"fork"``, ``"forkserver"``,
            ``"spawn"``), passed to every DataLoader.
        validate: check every row of the stage's splits against its files in :meth:`setup`
            (:func:`tlcore.validation.validate_manifest`) and raise
            :class:`tlcore.validation.ValidationError` listing every problem before any training;
            warnings (duplicated rows, empty val/test) are issued as warnings.
        on_error: ``"raise"`` or ``"skip"`` (a failed sample is replaced by a deterministic
            redraw, counted per file in :attr:`skips` and logged as the metric
            ``tlcore/skipped_samples``); see :class:`tlcore.training.dataset.TimelapseDataset`.
        prefetch: each worker fetches the encoded chunks of its next samples while it decodes
            the current one (remote OME-Zarr and TIFF; :mod:`tlcore.training.prefetch`). None
            (default): on when an image of the manifest is remote; False: off. Batches are the
            same either way.
        prefetch_bytes: bytes of fetched-ahead chunks each worker may hold (default 48 MiB).
        worker_timeout: seconds without a batch from the DataLoader workers before the run ends
            with :class:`tlcore.training.loader.WorkerError` instead of hanging (None: wait
            forever).
        **dataloader_kwargs: any other DataLoader argument (``prefetch_factor``...), passed
            to every DataLoader.

    Inside workers, files open lazily (nothing opened in the parent is inherited), dask runs
    synchronously and torch uses one thread.
    """

    def __init__(
        self,
        path: Any,
        transforms: Any = None,
        split_column: str | None = vocabulary.SPLIT_COLUMN,
        num_timepoints: int = 1,
        timepoint_sampling: str = "random",
        spatial_dims: int = 3,
        seed: int = 42,
        samples_per_epoch: int | Mapping[str, int | None] | None = None,
        extra_columns: Sequence[str] = (),
        img_path_column: str = vocabulary.PATH_COLUMN,
        channel_column: str = vocabulary.CHANNEL_COLUMN,
        scene_column: str = vocabulary.SCENE_COLUMN,
        resolution_column: str = vocabulary.RESOLUTION_COLUMN,
        time_start_column: str = vocabulary.TIME_START_COLUMN,
        time_stop_column: str = vocabulary.TIME_STOP_COLUMN,
        options_column: str = vocabulary.OPTIONS_COLUMN,
        image_columns: Mapping[str, str] | None = None,
        channel_columns: Mapping[str, str] | None = None,
        scene_columns: Mapping[str, str] | None = None,
        resolution_columns: Mapping[str, str] | None = None,
        options_columns: Mapping[str, str] | None = None,
        patch_shape: Sequence[int] | None = None,
        independent_crops: bool = False,
        crops_per_timepoint: int = 1,
        align_to_chunks: bool = False,
        chunk_cache: int | None = None,
        fold_time: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        multiprocessing_context: Any = None,
        validate: bool = True,
        on_error: str = "raise",
        prefetch: bool | None = None,
        prefetch_bytes: int = DEFAULT_PREFETCH_BYTES,
        worker_timeout: float | None = 600.0,
        **dataloader_kwargs: Any,
    ) -> None:
        super().__init__()
        self.validate = validate
        self.on_error = on_error
        self.prefetch = prefetch
        self.prefetch_bytes = prefetch_bytes
        #: samples skipped per file over the run (``on_error="skip"``), as batches arrive
        self.skips: Counter[str] = Counter()
        self.path = path
        self.transforms = transforms
        per_key = image_column_specs(
            image_columns or {vocabulary.IMAGE: img_path_column}, channel_columns,
            {"scene": scene_columns, "resolution": resolution_columns, "options": options_columns},
            {"channel": channel_column, "scene": scene_column, "resolution": resolution_column,
             "options": options_column},
        )  # fmt: skip
        main = next(iter(per_key))
        self.columns = Columns(
            img_path_column=per_key[main]["path"],
            channel_column=per_key[main].get("channel", ""),  # "": no column, every channel
            split_column=split_column,
            scene_column=per_key[main]["scene"],
            resolution_column=per_key[main]["resolution"],
            time_start_column=time_start_column,
            time_stop_column=time_stop_column,
            options_column=per_key[main]["options"],
            extra_columns=tuple(extra_columns),
            image_key=main,
            images={k: v for k, v in per_key.items() if k != main},
        )
        self.num_timepoints = num_timepoints
        self.timepoint_sampling = timepoint_sampling
        self.spatial_dims = spatial_dims
        self.seed = seed
        self.samples_per_epoch = samples_per_epoch
        self.patch_shape = patch_shape
        self.independent_crops = independent_crops
        self.crops_per_timepoint = crops_per_timepoint
        self.align_to_chunks = align_to_chunks
        self.chunk_cache = chunk_cache
        self.fold_time = fold_time
        self.storage_options = dict(storage_options or {})
        self.loader_kwargs: dict[str, Any] = dict(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers and num_workers > 0,
            **dataloader_kwargs,
        )
        if num_workers > 0:
            self.loader_kwargs["multiprocessing_context"] = multiprocessing_context
            self.loader_kwargs.setdefault("worker_init_fn", worker_init)
            if worker_timeout is not None:
                self.loader_kwargs.setdefault("timeout", float(worker_timeout))
        self.rows: dict[str, list[ManifestRow]] | None = None
        self.datasets: dict[str, TimelapseDataset] = {}
        self._loaders: dict[str, TimelapseDataLoader] = {}
        self._pending_state: dict[str, int] | None = None
        self._validated: set[str] = set()

    # -- set-up --------------------------------------------------------------------------------
    def manifest(self) -> dict[str, list[ManifestRow]]:
        """The manifest's rows per split (read once)."""
        if self.rows is None:
            self.rows = read_manifest(self.path, self.columns, self.storage_options or None)
        return self.rows

    def dataset(self, split: str) -> TimelapseDataset:
        """The split's dataset (built on first use; opens no file)."""
        if split not in self.datasets:
            rows = self.manifest()[split]
            if not rows:
                raise ValueError(
                    f"the manifest has no {split!r} rows (its splits: "
                    f"{ {s: len(r) for s, r in self.manifest().items()} })"
                )
            transforms: Callable[[dict[str, Any]], Any] | None = _per_split(self.transforms, split)
            self.datasets[split] = TimelapseDataset(
                rows,
                transforms,
                split=split,
                num_timepoints=self.num_timepoints,
                timepoint_sampling=self.timepoint_sampling,
                seed=self.seed,
                samples_per_epoch=_per_split(self.samples_per_epoch, split),
                spatial_dims=self.spatial_dims,
                patch_shape=self.patch_shape,
                independent_crops=self.independent_crops,
                crops_per_timepoint=self.crops_per_timepoint,
                align_to_chunks=self.align_to_chunks,
                chunk_cache=self.chunk_cache,
                storage_options=self.storage_options,
                on_error=self.on_error,
                prefetch=self.prefetch,
                prefetch_bytes=self.prefetch_bytes,
            )
        return self.datasets[split]

    def check(self, splits: Sequence[str] = SPLITS, required: Sequence[str] = ()) -> Any:
        """Validate the manifest's ``splits`` against their files, and dry-run each split's
        transforms on the files' layouts (:mod:`tlcore.validation.pipeline`); the
        :class:`tlcore.validation.Report`."""
        from tlcore.validation import validate_manifest

        return validate_manifest(
            self.path,
            self.columns,
            self.storage_options or None,
            splits=splits,
            required=required,
            num_timepoints=self.num_timepoints,
            patch_shape=self.patch_shape,
            spatial_dims=self.spatial_dims,
            batch_size=int(self.loader_kwargs.get("batch_size") or 1),
            pipelines=self._pipelines(splits),
        )

    def _pipelines(self, splits: Sequence[str]) -> dict[str, Any]:
        """What each split with rows will run, for the dry run (builds the datasets: no file
        is opened). A manifest that cannot be read gives none: validation reports it."""
        from tlcore.validation.pipeline import SplitPipeline

        try:
            rows = self.manifest()
        except Exception:
            return {}
        per_split = isinstance(self.transforms, Mapping) and any(
            str(k) in SPLITS for k in self.transforms
        )
        out = {}
        for split in splits:
            if not rows.get(split):
                continue
            missing = (
                per_split and _per_split(self.transforms, split) is None
                and self.patch_shape is None
            )  # fmt: skip
            out[split] = SplitPipeline(
                self.dataset(split).transforms,
                missing=missing,
                num_timepoints=1 if self.independent_crops else self.num_timepoints,
            )
        return out

    def setup(self, stage: str | None = None) -> None:
        splits = _STAGE_SPLITS.get(stage or "", SPLITS)
        if self.validate and not self._validated.issuperset(splits):
            from tlcore.validation import ValidationError

            report = self.check(splits, required=splits[:1])
            if not report.ok:
                raise ValidationError(report)
            for problem in report.warnings:
                if problem.row is not None:  # an absent val/test split is the user's choice
                    warnings.warn(str(problem), UserWarning, stacklevel=2)
            self._validated.update(splits)
        rows = self.manifest()
        self._prepare_statistics([s for s in splits if rows[s] or s == "train"])
        for split in splits:
            if rows[split] or split == "train":
                self.dataset(split)

    def _prepare_statistics(self, splits: Sequence[str]) -> None:
        """Estimate the whole-image statistics every ``NormalizeByImaged`` of the splits'
        pipelines needs, once per file, before training (they travel to workers with the
        dataset)."""
        from tlcore.training.pairs import prepare_statistics

        for split in splits:
            dataset = self.dataset(split)
            prepare_statistics(dataset.transforms, dataset.rows, self.storage_options)

    # -- loaders -------------------------------------------------------------------------------
    def loader(self, split: str) -> TimelapseDataLoader:
        """The split's DataLoader (one per split, kept so its position can be saved)."""
        if split not in self._loaders:
            dataset = self.dataset(split)
            loader = TimelapseDataLoader(
                dataset,
                sampler=TimelapseSampler(len(dataset)),
                collate_fn=partial(collate_samples, fold_time=self.fold_time),
                progress=self._trained if split == "train" else None,
                **self.loader_kwargs,
            )
            if split == "train" and self._pending_state:
                loader.load_state_dict(self._pending_state)
                self._pending_state = None
            self._loaders[split] = loader
        return self._loaders[split]

    def train_dataloader(self) -> TimelapseDataLoader:
        return self.loader("train")

    def val_dataloader(self) -> TimelapseDataLoader | list[Any]:
        return self.loader("val") if self.manifest()["val"] else []

    def test_dataloader(self) -> TimelapseDataLoader | list[Any]:
        return self.loader("test") if self.manifest()["test"] else []

    def predict_dataloader(self) -> TimelapseDataLoader | list[Any]:
        return self.test_dataloader()

    # -- skips ---------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the batch's skipped samples (``on_error="skip"``) per file and log the run's
        total as ``tlcore/skipped_samples`` to the trainer's loggers and callback metrics."""
        if not isinstance(batch, dict) or "skipped" not in batch:
            return batch
        paths = batch.get("skipped_paths") or []
        new = 0
        for joined in paths:
            for path in str(joined).split(";"):
                if path:
                    self.skips[path] += 1
                    new += 1
        if new:
            _log.warning("skipped %d sample(s) in this batch; per file so far: %s", new,
                         dict(self.skips))  # fmt: skip
        trainer = self._trainer_or_none()
        if trainer is not None:
            import torch

            total = float(sum(self.skips.values()))
            trainer.callback_metrics["tlcore/skipped_samples"] = torch.tensor(total)
            for logger in trainer.loggers:
                logger.log_metrics({"tlcore/skipped_samples": total}, step=trainer.global_step)
        return batch

    # -- resuming ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where training is: ``{"epoch", "batches"}`` (batches of the epoch already trained
        on). Lightning stores it in checkpoints; :meth:`load_state_dict` resumes there."""
        loader = self._loaders.get("train")
        return loader.state_dict() if loader is not None else dict(self._pending_state or {})

    def _trained(self) -> dict[str, int] | None:
        """What the trainer has trained on in this epoch, when training under one. Lightning
        fetches a batch ahead, so the loader's own count would be one too many."""
        trainer = self._trainer_or_none()
        if trainer is None or not trainer.training:
            return None
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": int(trainer.current_epoch), "batches": int(progress.processed)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        if not state_dict:
            return
        state = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}
        loader = self._loaders.get("train")
        if loader is not None:
            loader.load_state_dict(state)
        else:
            self._pending_state = state

    def _trainer_or_none(self) -> Any:
        try:
            return self.trainer
        except RuntimeError:
            return None
