"""Per-crop read cost of the lazy path against baselines measured in the same run.

Run with ``make bench``; prints figures, asserts only that the answers agree.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

import tlcore

pytestmark = pytest.mark.benchmark

SHAPE = (8, 1, 32, 512, 512)
CHUNKS = (1, 1, 16, 64, 64)  # 8 x 2 x 8 x 8 = 1,024 chunks
ROI = (16, 128, 128)


def _median_ms(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def test_crop_read_cost(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=SHAPE, chunks=CHUNKS)
    rng = np.random.default_rng(0)
    boxes = [
        (int(rng.integers(0, SHAPE[0])),
         *(int(rng.integers(0, n - r + 1)) for n, r in zip(SHAPE[2:], ROI)))
        for _ in range(40)
    ]  # fmt: skip

    def index(i: int) -> tuple[object, ...]:
        t, z, y, x = boxes[i % len(boxes)]
        return (t, 0, slice(z, z + ROI[0]), slice(y, y + ROI[1]), slice(x, x + ROI[2]))

    raw = zarr.open_array(str(store), path="0", mode="r")
    naive = da.from_zarr(raw)  # dask's default: inline_array=False
    image = tlcore.open_lazy(store)

    floor = _median_ms(lambda i: raw[index(i)], 40)
    baseline = _median_ms(lambda i: naive[index(i)].compute(scheduler="synchronous"), 40)
    ours = _median_ms(lambda i: image.data[index(i)].compute(scheduler="synchronous"), 40)
    assert np.array_equal(np.asarray(image.data[index(3)].compute()), raw[index(3)])
    print(
        f"\ncrop {ROI} uint16 from {SHAPE} in {CHUNKS} chunks (median of 40):\n"
        f"  zarr direct slicing (floor)     {floor:7.1f} ms\n"
        f"  dask.from_zarr default          {baseline:7.1f} ms  ({baseline / floor:.2f}x floor)\n"
        f"  tlcore.open_lazy                {ours:7.1f} ms  ({ours / floor:.2f}x floor, "
        f"{baseline / ours:.2f}x faster than from_zarr)"
    )


def test_slice_cost_does_not_grow_with_chunk_count(tmp_path: Path) -> None:
    """Metadata-only stores (missing chunks read as fill value): the cost is the graph."""
    rows = []
    for n_t in (10, 100, 1000):
        path = tmp_path / f"big-{n_t}.ome.zarr"
        root = zarr.open_group(str(path), mode="w-")
        root.create_array("0", shape=(n_t, 1, 32, 1024, 1024), chunks=(1, 1, 8, 64, 64),
                          dtype="uint16", dimension_names=list("tczyx"))  # fmt: skip
        axes = [{"name": d, "type": "space"} for d in "zyx"]
        root.attrs["ome"] = {"version": "0.5", "multiscales": [{
            "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, *axes],
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1, 1, 1, 1, 1]}]}]}]}  # fmt: skip
        raw = zarr.open_array(str(path), path="0", mode="r")
        n_chunks = int(np.prod(raw.cdata_shape))
        naive = da.from_zarr(raw)
        image = tlcore.open_lazy(path)
        key = (n_t // 2, 0, slice(4, 20), slice(100, 228), slice(300, 428))
        base = _median_ms(lambda i, a=naive, k=key: a[k].compute(scheduler="synchronous"), 5)
        ours = _median_ms(lambda i, a=image.data, k=key: a[k].compute(scheduler="synchronous"), 5)
        rows.append(f"  {n_chunks:>9,} chunks: from_zarr default {base:8.1f} ms, "
                    f"tlcore {ours:6.1f} ms ({base / ours:5.1f}x)")  # fmt: skip
    print("\nslice + compute one crop, cost vs chunk count:\n" + "\n".join(rows))
