"""``tlcore.predict``: a model over every voxel of a timelapse, read lazily, into OME-Zarr."""

from __future__ import annotations

import os
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tlcore.images import LazyImage
from tlcore.memory import TreeMemory
from tlcore.prediction.assemble import Assembler
from tlcore.prediction.data import TileBatches, load_model, needed_batches
from tlcore.prediction.errors import PredictionError
from tlcore.prediction.grid import BLENDS, Plan
from tlcore.prediction.writer import OutputStore, ome_attributes
from tlcore.progress import Bar
from tlcore.training.workers import worker_init

__all__ = ["Job", "predict"]

ZYX = Sequence[int]
ModelSpec = str | Callable[[], torch.nn.Module] | torch.nn.Module


class _EtaBar(Bar):
    """A bar that adds the time left, from the rate so far."""

    def render(self) -> str:
        text = super().render()
        if self.total and self.done and self.done < self.total:
            left = self._elapsed() / self.done * (self.total - self.done)
            text += f" ETA {int(left // 60):d}:{int(left % 60):02d}"
        return text


def _zyx(value: int | ZYX, name: str, minimum: int) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 3 or any(v < minimum for v in values):
        raise PredictionError(f"{name} must be {minimum} or more per Z, Y, X; got {value!r}")
    return values[0], values[1], values[2]


def _time_range(time: Any, size: int, where: str) -> range:
    if time is None:
        return range(size)
    if isinstance(time, str):
        start, _, stop = time.partition(":")
        time = slice(int(start) if start else None, int(stop) if stop else None)
    elif isinstance(time, tuple):
        time = slice(*time)
    if not isinstance(time, (slice, range)):
        raise TypeError(f"time must be 'START:STOP', a slice or a (start, stop) pair; got {time!r}")
    picked = range(size)[time.start : time.stop : time.step]
    if not len(picked):
        raise PredictionError(f"{where}: time {time} selects no frame of its {size} timepoints")
    return picked


def _channels(channels: Any, image: LazyImage, where: str) -> list[int] | None:
    if channels is None:
        return None
    if isinstance(channels, str):
        channels = [int(c) for c in channels.split(",") if c.strip()]
    picked = [int(c) for c in channels]
    n = image.shape[1]
    bad = [c for c in picked if not 0 <= c < n]
    if bad or not picked:
        raise PredictionError(
            f"{where}: channels {picked} do not exist; it has {n} channel(s), 0-{n - 1} "
            f"({', '.join(image.channel_names)})"
        )
    return picked


@dataclass
class Job:
    """Everything a run (plain or Lightning) shares: the input, the plan and the output's
    settings. Built by :meth:`Job.build`; JSON-friendly :attr:`settings` guard ``--resume``."""

    image: LazyImage
    plan: Plan
    times: range
    channels: list[int] | None
    out: str
    batch_size: int
    chunks: tuple[int, int, int]
    shards: tuple[int, int, int] | None
    dtype: str
    levels: int
    settings: dict[str, Any]

    @classmethod
    def build(cls, input: Any, out: str | os.PathLike[str], **kw: Any) -> Job:
        from tlcore.readers.api import open_lazy

        image = open_lazy(
            input, kw["scene"], kw["level"], kw.get("reader"),
            storage_options=kw.get("storage_options"),
        )  # fmt: skip
        where = f"{image.uri} scene {image.scene!r} level {image.level}"
        times = _time_range(kw["time"], image.shape[0], where)
        channels = _channels(kw["channels"], image, where)
        shape = image.shape[2:]
        tile = tuple(min(a, n) for a, n in zip(_zyx(kw["tile"], "tile", 1), shape))
        halo = _zyx(kw["halo"], "halo", 0)
        overlap = _zyx(kw["overlap"], "overlap", 0)
        chunks = tuple(min(a, n) for a, n in zip(_zyx(kw["chunks"] or tile, "chunks", 1), shape))
        shards = None if kw["shards"] is None else _zyx(kw["shards"], "shards", 1)
        if shards is not None and any(s % c for s, c in zip(shards, chunks)):
            raise PredictionError(f"shards {shards} must be multiples of the chunks {chunks}")
        unit = shards or chunks
        batch_size = int(kw["batch_size"])
        if batch_size < 1 or int(kw["levels"]) < 1:
            raise PredictionError("batch_size and levels must be at least 1")
        if kw["blend"] not in BLENDS:
            raise PredictionError(f"blend must be one of {', '.join(BLENDS)}; got {kw['blend']!r}")
        plan = Plan(len(times), shape, tile, halo, overlap, unit, kw["blend"])
        dtype = str(np.dtype(kw["dtype"]))
        settings = {
            "input": image.uri, "scene": image.scene, "level": image.level,
            "channels": channels, "time": [times.start, times.stop, times.step],
            "tile": list(tile), "halo": list(halo), "overlap": list(overlap),
            "blend": kw["blend"], "batch_size": batch_size, "dtype": dtype,
            "chunks": list(chunks), "shards": None if shards is None else list(shards),
            "levels": int(kw["levels"]),
        }  # fmt: skip
        return cls(
            image, plan, times, channels, os.fspath(out), batch_size,
            (chunks[0], chunks[1], chunks[2]), shards, dtype, int(kw["levels"]), settings,
        )  # fmt: skip

    def first_tile(self) -> torch.Tensor:
        """The plan's first tile, (1, C_in, Z, Y, X): what the model is probed with."""
        data = TileBatches(self.image, self.plan, 1, channels=self.channels, times=self.times)
        return torch.from_numpy(data.read((0, 0, 0, 0))[None])

    def check_output(self, x: torch.Tensor, y: Any) -> None:
        """Raise PredictionError unless ``y`` is (B, C_out, Z, Y, X) for the input ``x``."""
        shape = tuple(getattr(y, "shape", ()))
        if (
            not isinstance(y, torch.Tensor)
            or y.ndim != 5
            or shape[0] != x.shape[0]
            or shape[2:] != tuple(x.shape[2:])
        ):
            raise PredictionError(
                f"the model maps an input of shape {tuple(x.shape)} (B, C_in, Z, Y, X) to "
                f"{shape if isinstance(y, torch.Tensor) else type(y).__name__}; tlcore predict "
                "needs (B, C_out, Z, Y, X) of the same spatial size. Pad or crop inside the "
                "model, or choose --tile/--halo so the window suits it "
                f"(the window is {self.plan.window})"
            )

    def open_store(self, model: Any, channels: int, rank: int, world: int, *, resume: bool,
                   overwrite: bool, barrier: Callable[[], None]) -> OutputStore:  # fmt: skip
        """Create (rank 0) or reopen the output; every rank returns it opened."""
        names = getattr(model, "channel_names", None)
        if not names or len(names) != channels:
            names = [f"pred{i}" for i in range(channels)]
        self.settings.update(out_channels=channels, world=world)
        if rank == 0:
            resumed = OutputStore.prepare(
                self.out, inputs=[self.image.uri], overwrite=overwrite, resume=resume,
                settings=self.settings,
            )  # fmt: skip
            if not resumed:
                seconds = self.image.time_axis.seconds()
                OutputStore.create(
                    self.out,
                    shape=(len(self.times), channels, *self.image.shape[2:]),
                    chunks=self.chunks, shards=self.shards, dtype=self.dtype,
                    n_levels=self.levels,
                    ome=ome_attributes(self.image, self.times, list(names), self.levels),
                    tlcore_attrs={
                        "predict": self.settings,
                        "timestamps": None if seconds is None
                        else [seconds[t] for t in self.times],
                        "source_channel_names": list(self.image.channel_names),
                    },
                )  # fmt: skip
        barrier()
        return OutputStore(self.out, rank)


def _dist() -> tuple[int, int, Callable[[], None]]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), dist.barrier
    return 0, 1, lambda: None


def predict(
    model: ModelSpec,
    input: Any,
    out: str | os.PathLike[str],
    *,
    checkpoint: str | None = None,
    scene: int | str | None = 0,
    level: int = 0,
    channels: Sequence[int] | str | None = None,
    time: Any = None,
    tile: int | ZYX = (32, 256, 256),
    halo: int | ZYX = (4, 16, 16),
    overlap: int | ZYX = 0,
    blend: str = "gaussian",
    batch_size: int = 4,
    num_workers: int = 2,
    device: str | torch.device | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dtype: str = "float32",
    chunks: int | ZYX | None = None,
    shards: int | ZYX | None = None,
    levels: int = 1,
    reader: str | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Apply ``model`` to every voxel of one scene of ``input`` and write an OME-Zarr image.

    Tiles are read lazily through the reader registry in DataLoader workers, predicted in
    batches on ``device``, and each output unit (a timepoint's chunk, or shard, of every
    channel) is blended and written once, as soon as its last tile is done. Under
    ``torch.distributed`` each rank takes whole groups of units; call it on every rank.

    Args:
        model: a ``torch.nn.Module`` mapping float32 (B, C_in, Z, Y, X) to (B, C_out, Z, Y, X),
            a callable returning one, or ``"module:callable"``.
        input: a path or URL any reader plugin opens.
        out: the output store (a local folder, ``.ome.zarr``).
        checkpoint: a state dict or Lightning checkpoint loaded into the model.
        scene: scene index or id.
        level: resolution level of the input.
        channels: input channels fed to the model (indices, or ``"0,1"``); None for all.
        time: frames, ``"START:STOP"``, a slice or a pair; None for all.
        tile: core size per tile, Z, Y, X (clipped to the image).
        halo: context read around each tile and cut off its prediction; with a halo at least
            the model's receptive field radius the result equals the whole-image prediction.
        overlap: width over which neighbouring tiles' kept predictions are blended.
        blend: ``gaussian``, ``linear`` or ``none`` (each voxel from one tile).
        batch_size: tiles per model call.
        num_workers: DataLoader workers reading tiles (0 reads in this process).
        device: where the model runs; default CUDA when available, else CPU.
        resume: finish an interrupted run into ``out`` (same settings), skipping the units it
            recorded; the result is byte-identical to an uninterrupted run.
        overwrite: replace an existing ``out`` store.
        dtype: the output's dtype (integers are rounded and clipped).
        chunks: output chunk Z, Y, X (default: the tile); each chunk holds one timepoint and
            one channel.
        shards: zarr v3 shard Z, Y, X (multiples of ``chunks``), or None.
        levels: pyramid levels (each halving Y and X), 1 for none.
        reader: force an input reader by name.
        storage_options: fsspec options for a remote input.
        progress: draw a progress bar (default: on a terminal only).

    Returns:
        The report: ``tiles`` (predicted here), ``tiles_skipped`` (resumed), ``units_written``,
        ``seconds``, ``voxels_per_s``, ``peak_rss_bytes``, ``open_units_peak_bytes``, ``out``,
        ``shape``, ``window``, ``rank`` and ``world``.

    Raises:
        FileExistsError: ``out`` exists and neither ``overwrite`` nor ``resume`` is set.
        PredictionError: (a ValueError) bad settings, the output overlapping the input, a
            resume with other settings, or a model whose output does not fit (naming both
            shapes).
    """
    start = _time.perf_counter()
    with TreeMemory() as memory:
        report = _run(
            model, input, out, checkpoint=checkpoint, device=device, resume=resume,
            overwrite=overwrite, num_workers=num_workers, progress=progress,
            job_kw=dict(
                scene=scene, level=level, channels=channels, time=time, tile=tile, halo=halo,
                overlap=overlap, blend=blend, batch_size=batch_size, dtype=dtype,
                chunks=chunks, shards=shards, levels=levels, reader=reader,
                storage_options=storage_options,
            ),
        )  # fmt: skip
    report["seconds"] = round(_time.perf_counter() - start, 3)
    report["peak_rss_bytes"] = memory.peak_rss
    report["voxels_per_s"] = report["voxels"] / report["seconds"] if report["seconds"] else None
    return report


def _run(model: ModelSpec, input: Any, out: Any, *, checkpoint: str | None, device: Any,
         resume: bool, overwrite: bool, num_workers: int, progress: bool | None,
         job_kw: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    job = Job.build(input, out, **job_kw)
    net = load_model(model, checkpoint).eval()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net.to(dev)
    rank, world, barrier = _dist()
    job.settings["model"] = model if isinstance(model, str) else type(net).__name__
    # The first batch: the first tile, probed before anything is written.
    probe = job.first_tile()
    with torch.inference_mode():
        y = net(probe.to(dev))
    job.check_output(probe, y)
    store = job.open_store(net, int(y.shape[1]), rank, world, resume=resume,
                           overwrite=overwrite, barrier=barrier)  # fmt: skip
    done = store.done()
    plan = job.plan
    data = TileBatches(job.image, plan, job.batch_size, rank=rank, world=world, done=done,
                       channels=job.channels, times=job.times)  # fmt: skip
    mine = sum(len(b) for b in plan.batches(job.batch_size, rank, world))
    todo = sum(len(b) for b in needed_batches(plan, job.batch_size, rank, world, done))
    # worker_init: the training workers' set-up (obstore for S3 reads, decode threads shared
    # between workers, dask synchronous after the fork, large buffers reused).
    loader = torch.utils.data.DataLoader(
        data, batch_size=None, num_workers=num_workers, pin_memory=dev.type == "cuda",
        persistent_workers=False, worker_init_fn=worker_init,
    )  # fmt: skip
    assembler = Assembler(plan, store, int(y.shape[1]), skip=done)
    try:
        with _EtaBar("predicting", todo, unit="tiles", enabled=progress) as bar:
            for x, tiles in loader:
                with torch.inference_mode():
                    y = net(x.to(dev, non_blocking=True))
                job.check_output(x, y)
                pred = y.float().cpu().numpy()
                for i, tile in enumerate(tiles.tolist()):
                    assembler.add((tile[0], tile[1], tile[2], tile[3]), pred[i])
                bar.update(len(tiles))
        assembler.finish()
    finally:
        store.close()
    barrier()
    if rank == 0 and job.levels > 1:
        store.build_pyramid()
    barrier()
    return {
        "out": job.out, "tiles": todo, "tiles_skipped": mine - todo,
        "units_written": assembler.units_written, "voxels": assembler.voxels_written,
        "open_units_peak_bytes": assembler.peak_open_bytes,
        "shape": [len(job.times), int(y.shape[1]), *job.image.shape[2:]],
        "window": list(plan.window), "rank": rank, "world": world,
    }  # fmt: skip
