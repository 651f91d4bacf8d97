"""The Lightning way: ``trainer.predict(model, datamodule)`` writes the same store as
:func:`tlcore.predict`, sharded across ranks under DDP.

    dm = PredictionDataModule("movie.nd2", "pred.ome.zarr", tile=(16, 256, 256), halo=4)
    trainer = Trainer(callbacks=[PredictionWriter(dm)], devices=2, strategy="ddp")
    trainer.predict(model, datamodule=dm, return_predictions=False)

The datamodule's predict dataloader yields float32 tensors (B, C_in, Z, Y, X), so the model's
default ``predict_step`` (``self(batch)``) applies; the writer maps each batch back to its tiles
(the batches come in a fixed order) and writes each output unit once. Each rank reads only its
own groups of tiles (the dataset is iterable, so Lightning adds no sampler and no padding
duplicates).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from tlcore.prediction.assemble import Assembler
from tlcore.prediction.data import TileBatches
from tlcore.prediction.grid import TileId, UnitId
from tlcore.prediction.run import Job
from tlcore.prediction.writer import OutputStore
from tlcore.training.workers import worker_init

__all__ = ["PredictionDataModule", "PredictionWriter"]


class PredictionDataModule(pl.LightningDataModule):  # type: ignore[misc]  # untyped base
    """The tiles of one scene, for ``trainer.predict``; the output store is created (or
    reopened with ``resume``) in :meth:`setup`. Arguments as :func:`tlcore.predict`.

    Args:
        input: a path or URL any reader plugin opens.
        out: the output store.
        out_channels: the model's output channels; default ``len(model.channel_names)``, else
            found by running the model on the first tile (on the CPU, in ``setup``).
        num_workers: DataLoader workers reading tiles.
        resume: as :func:`tlcore.predict`.
        overwrite: as :func:`tlcore.predict`.
        scene: as :func:`tlcore.predict`.
        level: as :func:`tlcore.predict`.
        channels: as :func:`tlcore.predict`.
        time: as :func:`tlcore.predict`.
        tile: as :func:`tlcore.predict`.
        halo: as :func:`tlcore.predict`.
        overlap: as :func:`tlcore.predict`.
        blend: as :func:`tlcore.predict`.
        batch_size: as :func:`tlcore.predict`.
        dtype: as :func:`tlcore.predict`.
        chunks: as :func:`tlcore.predict`.
        shards: as :func:`tlcore.predict`.
        levels: as :func:`tlcore.predict`.
        reader: as :func:`tlcore.predict`.
        storage_options: as :func:`tlcore.predict`.
    """

    def __init__(
        self,
        input: Any,
        out: str | os.PathLike[str],
        *,
        out_channels: int | None = None,
        num_workers: int = 2,
        resume: bool = False,
        overwrite: bool = False,
        scene: int | str | None = 0,
        level: int = 0,
        channels: Sequence[int] | str | None = None,
        time: Any = None,
        tile: int | Sequence[int] = (32, 256, 256),
        halo: int | Sequence[int] = (4, 16, 16),
        overlap: int | Sequence[int] = 0,
        blend: str = "gaussian",
        batch_size: int = 4,
        dtype: str = "float32",
        chunks: int | Sequence[int] | None = None,
        shards: int | Sequence[int] | None = None,
        levels: int = 1,
        reader: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.input, self.out = input, out
        self.out_channels = out_channels
        self.num_workers = num_workers
        self.resume, self.overwrite = resume, overwrite
        self.job_kw = dict(
            scene=scene, level=level, channels=channels, time=time, tile=tile, halo=halo,
            overlap=overlap, blend=blend, batch_size=batch_size, dtype=dtype, chunks=chunks,
            shards=shards, levels=levels, reader=reader, storage_options=storage_options,
        )  # fmt: skip
        self.job: Job | None = None
        self.store: OutputStore | None = None
        self.done: set[UnitId] = set()
        self.rank, self.world = 0, 1

    def setup(self, stage: str) -> None:
        if stage != "predict" or self.job is not None:
            return
        job = Job.build(self.input, self.out, **self.job_kw)
        trainer = self.trainer
        model: Any = trainer.lightning_module if trainer is not None else None
        self.rank = trainer.global_rank if trainer is not None else 0
        self.world = trainer.world_size if trainer is not None else 1
        channels = self.out_channels or len(getattr(model, "channel_names", None) or ())
        if not channels:
            if model is None:
                raise ValueError("out_channels is needed without a trainer and model")
            probe = job.first_tile().to(model.device)
            with torch.inference_mode():
                y = model(probe)
            job.check_output(probe, y)
            channels = int(y.shape[1])
        job.settings["model"] = type(model).__name__
        barrier = trainer.strategy.barrier if trainer is not None else (lambda: None)
        self.store = job.open_store(model, channels, self.rank, self.world, resume=self.resume,
                                    overwrite=self.overwrite, barrier=barrier)  # fmt: skip
        self.done = self.store.done()
        self.job = job
        self.channels = channels

    def dataset(self) -> TileBatches:
        """This rank's batches of tiles (after :meth:`setup`)."""
        if self.job is None:
            raise RuntimeError("call setup('predict') first (trainer.predict does)")
        return TileBatches(
            self.job.image, self.job.plan, self.job.batch_size, rank=self.rank,
            world=self.world, done=self.done, channels=self.job.channels,
            times=self.job.times, with_tiles=False,
        )  # fmt: skip

    def predict_dataloader(self) -> torch.utils.data.DataLoader[Any]:
        return torch.utils.data.DataLoader(
            self.dataset(), batch_size=None, num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(), worker_init_fn=worker_init,
        )  # fmt: skip


class PredictionWriter(BasePredictionWriter):  # type: ignore[misc]  # untyped base
    """Writes ``trainer.predict``'s batches into the datamodule's store, each unit once.

    Args:
        datamodule: the :class:`PredictionDataModule` passed to ``trainer.predict``.
    """

    def __init__(self, datamodule: PredictionDataModule) -> None:
        super().__init__(write_interval="batch")
        self.dm = datamodule
        self._batches: Iterator[list[TileId]] | None = None
        self.assembler: Assembler | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.predict_loop.return_predictions:
            warnings.warn(
                "trainer.predict keeps every prediction in memory: pass "
                "return_predictions=False, the PredictionWriter writes them",
                stacklevel=2,
            )
        dm = self.dm
        if dm.store is None or dm.job is None:
            raise RuntimeError("the PredictionWriter's datamodule was not set up")
        self.assembler = Assembler(dm.job.plan, dm.store, dm.channels, skip=dm.done)
        self._batches = dm.dataset().batches()

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self._batches is not None and self.assembler is not None and self.dm.job
        tiles = next(self._batches)
        self.dm.job.check_output(batch, prediction)
        if prediction.shape[0] != len(tiles):
            raise RuntimeError(
                f"batch {batch_idx} has {prediction.shape[0]} tiles, not {len(tiles)}"
            )
        pred = prediction.detach().float().cpu().numpy()
        for i, tile in enumerate(tiles):
            self.assembler.add(tile, pred[i])

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.assembler is not None and self.dm.store is not None and self.dm.job
        try:
            self.assembler.finish()
        finally:
            self.dm.store.close()
        trainer.strategy.barrier()
        if trainer.global_rank == 0 and self.dm.job.levels > 1:
            self.dm.store.build_pyramid()
        trainer.strategy.barrier()
