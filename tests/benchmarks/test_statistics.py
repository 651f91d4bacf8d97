"""image_statistics on a generated store with a skewed (log-normal) intensity distribution,
written chunk by chunk: estimate error against exact percentiles, bytes read against the
full-resolution image, time, with a pyramid and without. Prints figures; asserts the targets.

Size: TLCORE_STATS_BENCH_GB (default 0.25; the docs' figures used the value they state)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import tlcore
from tlcore.statistics import cache

pytestmark = [pytest.mark.benchmark, pytest.mark.slow]


def _write(path: Path, gb: float, levels: int) -> tuple[np.ndarray, int]:
    """A T, 1, 8, Y, X uint16 store, levels by 2x2 mean; returns (a histogram of level 0, its
    byte count) for exact percentiles without holding the image."""
    import zarr

    side = 1024
    t_n = max(1, int(gb * 2**30 / (8 * side * side * 2)))
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    arrays = []
    for lv in range(levels):
        s = side >> lv
        shape = (t_n, 1, 8, s, s)
        arrays.append(
            root.create_array(str(lv), shape=shape, chunks=(1, 1, 8, 128, 128), dtype="uint16")
        )
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
        "datasets": [{"path": str(lv), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 1.0, 0.2 * 2**lv, 0.2 * 2**lv]}]}
            for lv in range(levels)],
    }]}  # fmt: skip
    hist = np.zeros(65536, dtype=np.int64)
    rng = np.random.default_rng(0)
    for t in range(t_n):
        # Dim background, rare bright structures: a long right tail, brighter over time.
        block = rng.lognormal(5.0 + 0.02 * t, 0.6, size=(1, 8, side, side))
        bright = rng.random((1, 8, side // 32, side // 32)) < 0.05
        block *= 1 + 20 * np.kron(bright, np.ones((1, 1, 32, 32)))
        block = np.clip(block, 0, 65535).astype(np.uint16)
        hist += np.bincount(block.ravel(), minlength=65536)
        for lv, arr in enumerate(arrays):
            f = 2**lv
            down = block.reshape(1, 8, side // f, f, side // f, f).mean(axis=(3, 5))
            arr[t] = down.astype(np.uint16)
    return hist, t_n * 8 * side * side * 2


def _exact(hist: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    cum = np.cumsum(hist) / hist.sum()
    return np.array([np.searchsorted(cum, p / 100.0) for p in q], dtype=np.float64)


@pytest.mark.parametrize("levels", [4, 1])
def test_statistics_on_a_skewed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      levels: int) -> None:  # fmt: skip
    monkeypatch.setenv(cache.STATS_ENV, str(tmp_path / "stats"))
    gb = float(os.environ.get("TLCORE_STATS_BENCH_GB", "0.25"))
    store = tmp_path / "skewed.ome.zarr"
    hist, nbytes = _write(store, gb, levels)
    q = (1.0, 99.8)
    t0 = time.perf_counter()
    stats = tlcore.image_statistics(store, percentiles=q)
    seconds = time.perf_counter() - t0
    exact = _exact(hist, q)
    span = float(np.nonzero(hist)[0][-1] - np.nonzero(hist)[0][0])
    error = np.abs(stats.percentiles[0] - exact) / span
    t1 = time.perf_counter()
    again = tlcore.image_statistics(store, percentiles=q)
    second = time.perf_counter() - t1
    print(
        f"\nstatistics, {nbytes / 2**30:.2f} GiB store, {levels} level(s): read level "
        f"{stats.source_level}, {stats.n_voxels:,} voxels, {stats.bytes_read / 2**20:.1f} MiB = "
        f"{100 * stats.bytes_read / nbytes:.2f} % of level 0, {seconds:.2f} s; exact p1/p99.8 "
        f"{exact.tolist()}, estimate {stats.percentiles[0].round(1).tolist()}, error "
        f"{(100 * error).round(3).tolist()} % of the range {span:g}; second call "
        f"{1e3 * second:.1f} ms ({again.cached})"
    )
    assert again.cached == "memory"
    assert np.all(error < 0.02)
    assert stats.bytes_read <= 0.05 * nbytes
