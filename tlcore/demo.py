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

DEMO_SHAPE = (16, 2, 16, 512, 512)  # T, C, Z, Y, X: 16.8 MB per timepoint (uint16)
DEMO_CHUNKS = (1, 1, 16, 128, 128)


def _measure(fn: Callable[[], Any], n: int, n_memory: int = 5) -> tuple[float, int]:
    """Median seconds per call over ``n`` calls, then the peak traced allocation over
    ``n_memory`` more (tracemalloc slows allocation, so it is kept out of the timing)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    try:
        for _ in range(n_memory):
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return float(np.median(times)), peak


def run_demo(
    out_dir: str | os.PathLike[str] = "demo-output",
    n_crops: int = 200,
    roi: tuple[int, int, int] = (16, 128, 128),
    seed: int = 0,
) -> int:
    from monai.transforms import Compose, RandSpatialCropd

    import tlcore
    from tlcore.lazy import read_stats
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
        {"original_path": str(store), "T": int(t)} for t in rng.integers(0, axis.size, n_crops)
    ]

    it = itertools.cycle(samples)
    read_stats.reset()
    lazy_s, lazy_peak = _measure(lambda: pipeline(next(it)), n_crops)
    regions, delivered = read_stats.snapshot()
    delivered_per_crop = delivered / (n_crops + 5)
    crop = pipeline(samples[0])["raw"]
    crop_bytes = crop.numel() * image.dtype.itemsize

    # Eager baseline: what a non-lazy loader does, read the whole timepoint then crop.
    def eager() -> None:
        t = int(rng.integers(0, axis.size))
        full = np.asarray(image.data[t].compute(scheduler="synchronous"), dtype=np.float32)
        z, y, x = (int(rng.integers(0, n - r + 1)) for n, r in zip(full.shape[1:], roi))
        _ = full[:, z : z + roi[0], y : y + roi[1], x : x + roi[2]].copy()

    n_eager = max(5, n_crops // 20)
    eager_s, eager_peak = _measure(eager, n_eager)

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
        f"  decoded {delivered_per_crop / 1e6:.2f} MB of chunks per crop of "
        f"{crop_bytes / 1e6:.2f} MB (read amplification {delivered_per_crop / crop_bytes:.1f}x, "
        f"{regions / (n_crops + 5):.1f} chunks per crop); store is {disk / 1e6:.0f} MB on disk"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"  process peak RSS {rss:.0f} MB (torch and MONAI included)")
    return 0
