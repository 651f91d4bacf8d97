"""tlcore.lazy.compute: a slice chain over one ``as_dask`` array is read as one ArrayReader region,
with exactly dask's pixels, on every plugin's files; anything else falls back to dask."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest

import tlcore
from tlcore.lazy import as_dask, read_stats
from tlcore.lazy.compute import compute, find_region

from ..readers.test_formats import READABLE
from ..support.readers import NumpyArrayReader

DATA = np.arange(2 * 3 * 8 * 16 * 16, dtype=np.uint16).reshape(2, 3, 8, 16, 16)


@pytest.fixture
def lazy() -> Any:
    return as_dask(NumpyArrayReader("compute-test", DATA, (1, 1, 4, 8, 8)))


# (index steps applied one after another, the ArrayReader reads the fast path makes)
CHAINS: list[tuple[list[Any], int]] = [
    ([()], 1),
    ([1], 1),
    ([1, slice(0, 2), (slice(None), slice(1, 7), slice(3, 13), slice(2, 9))], 1),
    ([(slice(None), slice(None), slice(None, None, -1), slice(3, 15, 3), slice(-5, None))], 1),
    ([(Ellipsis, 5)], 1),
    ([1, [0, 2], (slice(None), slice(1, 7), slice(3, 13), slice(2, 9))], 2),  # skips C=1
    ([0, [2, 0, 2], (slice(None), 3, slice(None, None, 2))], 2),  # unordered, repeated
    ([(-1, -1, -1, -1, -1)], 1),
]


def _apply(array: Any, steps: list[Any]) -> Any:
    for step in steps:
        array = array[step]
    return array


@pytest.mark.parametrize(("steps", "reads"), CHAINS)
def test_slice_chains_read_one_region_with_dasks_pixels(
    lazy: Any, steps: list[Any], reads: int
) -> None:
    value = _apply(lazy, steps)
    region = find_region(value)
    assert region is not None
    read_stats.reset()
    got = compute(value)
    regions, _ = read_stats.snapshot()
    want = value.compute(scheduler="synchronous")
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert np.array_equal(got, _apply(DATA, steps))
    assert regions == len(region.regions) == reads


@pytest.mark.parametrize(
    "build",
    [
        lambda x: da.concatenate([x[0], x[1]])[:, 1:3],  # several timepoints
        lambda x: x[1, :, 2:6].astype("float32"),
        lambda x: (x + 1)[0],
        lambda x: da.from_array(DATA)[0],  # no ArrayReader below
    ],
)
def test_other_graphs_fall_back_to_dask(lazy: Any, build: Callable[[Any], Any]) -> None:
    value = build(lazy)
    assert find_region(value) is None
    got = compute(value)
    assert np.array_equal(got, value.compute(scheduler="synchronous"))


def test_switch_turns_the_fast_path_off(lazy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    value = lazy[0, :, 2:6, 3:11, 3:11]  # 3 channels x 2 x 2 x 2 chunks: 24 dask tasks
    read_stats.reset()
    compute(value)
    assert read_stats.snapshot()[0] == 1
    monkeypatch.setenv("TLCORE_DIRECT_READ", "0")
    read_stats.reset()
    fallback = compute(value)
    assert read_stats.snapshot()[0] == 24  # one read per touched chunk
    assert np.array_equal(fallback, DATA[0, :, 2:6, 3:11, 3:11])
    read_stats.reset()
    compute(value, direct=True)
    assert read_stats.snapshot()[0] == 1


def test_a_crop_of_a_three_million_chunk_array_is_one_region() -> None:
    """Planning replays only the crop's tasks, never the whole base layer (timed in
    tests/benchmarks/test_throughput.py)."""
    big = NumpyArrayReader("big", np.zeros((1, 1, 1, 1, 1), np.uint8), (1, 1, 1, 1, 1))
    big.shape = (3000, 1, 1, 100, 1000)  # metadata only: the read below stays in bounds
    big.chunks = (1, 1, 1, 10, 10)
    value = as_dask(big)[0, 0, 0, 0:1, 0:1]
    region = find_region(value)
    assert region is not None and region.regions[0][0] == slice(0, 1)


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_every_plugin_gives_dasks_pixels(testdata: Path, relative: str) -> None:
    image = tlcore.open_lazy(testdata / relative)
    t, c, z, y, x = image.shape
    box = (
        t - 1,
        slice(0, c),
        slice(z // 3, z),
        slice(y // 5, max(y // 5 + 1, 3 * y // 4)),
        slice(x // 7, max(x // 7 + 1, 5 * x // 6)),
    )
    value = image.data[box]
    region = find_region(value)
    assert region is not None, f"{relative}: the fast path did not recognise a plain crop"
    got = compute(value)
    want = value.compute(scheduler="synchronous")
    assert got.dtype == want.dtype and np.array_equal(got, want)
    if c > 1:
        picked = image.data[0][[c - 1, 0]]
        assert np.array_equal(compute(picked), picked.compute(scheduler="synchronous"))


def test_compute_daskd_reads_one_region_per_crop(
    synthetic_store: Callable[..., Path], file_opens: Any
) -> None:
    from tlcore import ComputeDaskd, LoadLazyd, RandLazyCropd

    store = synthetic_store(shape=(3, 2, 8, 96, 128), chunks=(1, 1, 4, 32, 32))
    sample = RandLazyCropd(keys="raw", roi_size=(4, 40, 40))(
        LoadLazyd(keys="raw")({"original_path": str(store), "T": 1})
    )
    read_stats.reset()
    file_opens.watch(store)
    out = ComputeDaskd(keys="raw")(sample)
    assert read_stats.snapshot()[0] == 1
    z, y, x = out["raw_meta"]["crop_start"]
    raw = tlcore.open_lazy(store).data[1, :, z : z + 4, y : y + 40, x : x + 40]
    assert np.array_equal(out["raw"].numpy(), raw.compute(scheduler="synchronous"))
    touched = {(c, zz, yy, xx) for c in range(2) for zz in range(z // 4, (z + 3) // 4 + 1)
               for yy in range(y // 32, (y + 39) // 32 + 1)
               for xx in range(x // 32, (x + 39) // 32 + 1)}  # fmt: skip
    assert len(file_opens.chunk_files()) == len(touched)
