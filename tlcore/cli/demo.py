"""``tlcore demo``: write a synthetic timelapse, read random crops through the lazy path, and
report what was read, how fast, and the memory used, against an eager baseline measured in the
same run."""

from __future__ import annotations

import itertools
import os
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tlcore import vocabulary
from tlcore.progress import Bar, track

DEMO_SHAPE = (16, 2, 16, 512, 512)  # T, C, Z, Y, X: 16.8 MB per timepoint (uint16)
DEMO_CHUNKS = (1, 1, 16, 128, 128)


def _measure(
    fn: Callable[[], Any], n: int, n_memory: int = 5, label: str = "crops"
) -> tuple[float, int]:
    """Median seconds per call over ``n`` calls, then the peak traced allocation over
    ``n_memory`` more (tracemalloc slows allocation, so it is kept out of the timing). A
    progress bar on stderr when it is a terminal."""
    times = []
    with Bar(label, n + n_memory) as bar:
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            bar.update()
        tracemalloc.start()
        try:
            for _ in range(n_memory):
                fn()
                bar.update()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return float(np.median(times)), peak


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    n_crops: int = 200,
    roi: tuple[int, int, int] = (16, 128, 128),
    seed: int = 0,
    train_steps: int = 20,
) -> int:
    from monai.transforms import Compose, RandSpatialCropd

    import tlcore
    from tlcore.testing.synthetic import write_ome_zarr
    from tlcore.transforms import ComputeDaskd, LoadLazyd

    out = Path(out_dir)
    store = out / "synthetic-timelapse.ome.zarr"
    if not store.exists():
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        print(f"writing a synthetic timelapse {DEMO_SHAPE} (TCZYX, uint16) to {store} ...")
        write_ome_zarr(store, DEMO_SHAPE, DEMO_CHUNKS, n_levels=2, interval_s=30.0, seed=seed)
        print(f"  written in {time.perf_counter() - t0:.1f} s")
    disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())

    t0 = time.perf_counter()
    image = tlcore.open_lazy(store)
    open_ms = (time.perf_counter() - t0) * 1e3
    print(
        f"\nopened through the registry in {open_ms:.0f} ms: reader {image.reader!r}, "
        f"scene {image.scene!r}, shape TCZYX {image.shape}, {image.dtype}, "
        f"chunks {image.data.chunksize}"
    )
    axis = image.time_axis
    print(
        f"  time axis: {axis.size} timepoints every {axis.interval} s; pixel sizes (um) "
        f"{tuple(image.pixel_sizes)}; channels {list(image.channel_names)}"
    )
    print(f"  levels: {[lv.shape for lv in tlcore.levels(store)]}")

    rng = np.random.default_rng(seed)
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandSpatialCropd(keys="raw", roi_size=roi, random_size=False),
        ComputeDaskd(keys="raw", dtype="float32"),
    ])  # fmt: skip
    pipeline.set_random_state(seed=seed)
    samples = [
        {vocabulary.PATH: str(store), vocabulary.TIMEPOINTS: int(t)}
        for t in rng.integers(0, axis.size, n_crops)
    ]

    it = itertools.cycle(samples)
    boxes: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def lazy_crop() -> None:
        meta = pipeline(next(it))["raw_meta"]
        boxes.append((tuple(meta["crop_start"]), tuple(meta["crop_size"])))

    lazy_s, lazy_peak = _measure(lazy_crop, n_crops, label="lazy crops")
    # What the store decodes: every storage chunk a crop's box touches, all channels read.
    zyx_chunks = image.data.chunksize[2:]
    chunk_bytes = int(np.prod(image.data.chunksize[1:])) * image.dtype.itemsize
    touched = [
        int(np.prod([(s + n - 1) // c - s // c + 1 for s, n, c in zip(start, size, zyx_chunks)]))
        for start, size in boxes
    ]
    channel_chunks = -(-image.shape[1] // image.data.chunksize[1])
    chunks_per_crop = float(np.mean(touched)) * channel_chunks
    decoded_per_crop = chunks_per_crop * chunk_bytes
    crop = pipeline(samples[0])["raw"]
    crop_bytes = crop.numel() * image.dtype.itemsize

    # Eager baseline: what a non-lazy loader does, read the whole timepoint then crop.
    def eager() -> None:
        t = int(rng.integers(0, axis.size))
        full = np.asarray(image.data[t].compute(scheduler="synchronous"), dtype=np.float32)
        z, y, x = (int(rng.integers(0, n - r + 1)) for n, r in zip(full.shape[1:], roi))
        _ = full[:, z : z + roi[0], y : y + roi[1], x : x + roi[2]].copy()

    n_eager = max(5, n_crops // 20)
    eager_s, eager_peak = _measure(eager, n_eager, label="eager crops")

    timepoint_mb = image.data[0].nbytes / 1e6
    print(
        f"\nread {n_crops} random crops of {tuple(crop.shape)} (C, Z, Y, X) -> "
        f"torch {crop.dtype} through LoadLazyd -> RandSpatialCropd -> ComputeDaskd"
    )
    print(
        f"  lazy : {lazy_s * 1e3:7.1f} ms/crop median, {1 / lazy_s:6.1f} crops/s, "
        f"peak memory {lazy_peak / 1e6:7.1f} MB"
    )
    print(
        f"  eager: {eager_s * 1e3:7.1f} ms/crop median, {1 / eager_s:6.1f} crops/s, "
        f"peak memory {eager_peak / 1e6:7.1f} MB  (whole timepoint {timepoint_mb:.1f} MB, "
        f"{n_eager} samples)"
    )
    print(
        f"  lazy vs eager: {eager_s / lazy_s:.1f}x faster, "
        f"{eager_peak / max(lazy_peak, 1):.1f}x less peak memory"
    )
    print(
        f"  decoded {decoded_per_crop / 1e6:.2f} MB of chunks per crop of "
        f"{crop_bytes / 1e6:.2f} MB (read amplification {decoded_per_crop / crop_bytes:.1f}x, "
        f"{chunks_per_crop:.1f} chunks per crop); store is {disk / 1e6:.0f} MB on disk"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"  process peak RSS {rss:.0f} MB (torch and MONAI included)")
    if train_steps > 0:
        train_demo(store, steps=train_steps, roi=roi, seed=seed)
    return 0


def _train(
    store: Path, steps: int, roi: tuple[int, int, int], seed: int, eager: bool, workers: int
) -> tuple[float, int | None, int | None, tuple[int, ...]]:
    """A few optimiser steps of a small 3D network fed by the datamodule; returns samples per
    second (after the first batch, which pays for starting the workers), the peak RSS and PSS
    of the whole process tree, and the batch shape."""
    import pandas as pd
    import torch
    from monai.transforms import Compose, RandFlipd, RandSpatialCropd

    from tlcore.memory import TreeMemory
    from tlcore.training.datamodule import RandomTimelapseDatamodule
    from tlcore.transforms import BioIOImageLoaderd, ComputeDaskd

    pipeline = Compose([
        # The guide's loader; eager reads the whole timepoint as float32, then crops.
        BioIOImageLoaderd(path_key=vocabulary.PATH, out_key="raw", dask_load=not eager,
                          dtype="float32"),
        RandSpatialCropd(keys="raw", roi_size=roi, random_size=False),
        ComputeDaskd(keys="raw", dtype="float32"),
        RandFlipd(keys="raw", prob=0.5, spatial_axis=[1, 2]),
    ])  # fmt: skip
    manifest = pd.DataFrame({"path": [str(store)], "split": ["train"], "start": [0]})
    datamodule = RandomTimelapseDatamodule(
        manifest, transforms=pipeline, batch_size=4, num_workers=workers, seed=seed,
        samples_per_epoch=4 * steps,
    )  # fmt: skip
    datamodule.setup("fit")
    torch.manual_seed(seed)
    # Small on purpose: on a CPU a real network would hide what the data path costs.
    net = torch.nn.Sequential(
        torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 2, 1)
    )
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    shape: tuple[int, ...] = ()
    with TreeMemory() as memory:
        start = 0.0
        batches = track(datamodule.train_dataloader(), f"training ({'eager' if eager else 'lazy'})")
        for i, batch in enumerate(batches):
            if i == 1:
                start = time.perf_counter()
            x = batch["raw"]
            shape = tuple(x.shape)
            noisy = x + 0.1 * x.std() * torch.randn_like(x)
            loss = torch.nn.functional.mse_loss(net(noisy), x)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        elapsed = time.perf_counter() - start
    samples_per_s = 4 * (steps - 1) / elapsed
    return samples_per_s, memory.peak_rss, memory.peak_pss, shape


def train_demo(
    store: Path, steps: int = 20, roi: tuple[int, int, int] = (16, 128, 128), seed: int = 0
) -> None:
    """Train a small 3D denoiser through :class:`tlcore.RandomTimelapseDatamodule`, lazily and
    the eager way (load the timepoint, then crop), and print speed and memory side by side."""
    workers = 2
    print(
        f"\ntraining a small 3D denoiser through RandomTimelapseDatamodule: batches of 4 "
        f"random {roi} crops, {workers} DataLoader workers, {steps} steps"
    )
    lazy = _train(store, steps, roi, seed, eager=False, workers=workers)
    eager = _train(store, steps, roi, seed, eager=True, workers=workers)

    def mb(n: int | None) -> str:
        return "   n/a" if n is None else f"{n / 1e6:6.0f}"

    for name, (rate, rss, pss, shape) in (("lazy ", lazy), ("eager", eager)):
        print(
            f"  {name}: {rate:6.1f} samples/s, peak memory of the process tree (workers "
            f"included) RSS {mb(rss)} MB, PSS {mb(pss)} MB; batch {shape}"
        )
    print(f"  lazy vs eager: {lazy[0] / eager[0]:.1f}x the samples per second", end="")
    if lazy[2] and eager[2]:
        print(f", {eager[2] / lazy[2]:.2f}x less PSS (torch and MONAI in 3 processes included)")
    else:
        print()
