"""image_statistics on real files and synthetic stores: exact on small images, within 2 % of the
value range when sampled, a pyramid's coarse level read instead of level 0, a second call (in
this process or after the process cache is gone) reads no pixel."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tlcore
from tlcore.lazy.reader import read_stats
from tlcore.statistics import cache
from tlcore.statistics.sample import choose_level, plan
from tlcore.types import Level

REAL = [
    "nd2/example-timelapse.nd2",
    "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi",
    "tiff/CH1_16bit.tif",
    "ome-zarr/image-03.zarr",
]


@pytest.fixture(autouse=True)
def stats_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "stats"
    monkeypatch.setenv(cache.STATS_ENV, str(folder))
    cache.clear_memory()
    yield folder
    cache.clear_memory()


def exact(path: Path, scene: int = 0) -> np.ndarray:
    """Every voxel, T C Z Y X, read through the same open path."""
    image = tlcore.open_lazy(path, scene=scene)
    return np.asarray(image.data.compute(scheduler="synchronous"))


def relative_error(stats: tlcore.ImageStatistics, data: np.ndarray) -> float:
    """Largest |estimate - exact| over channels and percentiles, as a fraction of the channel's
    value range."""
    worst = 0.0
    for i, c in enumerate(stats.channels):
        values = data[:, c].ravel()
        truth = np.percentile(values, stats.q)
        span = float(values.max()) - float(values.min()) or 1.0
        worst = max(worst, float(np.max(np.abs(stats.percentiles[i] - truth))) / span)
    return worst


@pytest.mark.parametrize("name", REAL)
def test_small_real_files_are_exact(testdata: Path, name: str) -> None:
    path = testdata / name
    stats = tlcore.image_statistics(path)
    data = exact(path)
    assert stats.exact and stats.source_level == 0
    assert stats.percentiles.shape == (data.shape[1], len(stats.q))
    assert stats.n_voxels == data.shape[0] * data.shape[2] * data.shape[3] * data.shape[4]
    np.testing.assert_allclose(stats.percentiles[0], np.percentile(data[:, 0], stats.q))
    np.testing.assert_allclose(stats.mean[0], data[:, 0].mean())
    np.testing.assert_allclose(stats.std[0], data[:, 0].std(), rtol=1e-6)
    assert stats.bytes_read == data.nbytes


# Sampled at a quarter of the voxels. The CZI, TIFF and OME-TIFF samples are not here: their
# bright objects are few and clustered, and a sample of 30,000-150,000 voxels misses 2-6 % of
# the range at p99.8 (docs/normalisation.md); the default budget reads such small files whole.
@pytest.mark.parametrize("name", ["nd2/example-timelapse.nd2"])
def test_sampled_real_files_within_two_percent(testdata: Path, name: str) -> None:
    path = testdata / name
    data = exact(path)
    per_channel = data.shape[0] * data.shape[2] * data.shape[3] * data.shape[4]
    stats = tlcore.image_statistics(
        path, percentiles=(1.0, 99.8), budget_voxels=per_channel // 4, use_cache=False
    )
    assert not stats.exact
    assert stats.n_voxels <= per_channel // 3
    assert stats.bytes_read < data.nbytes / 2
    assert relative_error(stats, data) < 0.02


def test_second_call_reads_nothing(testdata: Path, stats_dir: Path) -> None:
    path = testdata / "nd2/example-timelapse.nd2"
    first = tlcore.image_statistics(path, channels=0, timepoints=(0, 10))
    assert first.cached is None and first.bytes_read > 0 and first.timepoints == tuple(range(10))
    before = read_stats.snapshot()
    again = tlcore.image_statistics(path, channels=0, timepoints=(0, 10))
    assert again.cached == "memory" and read_stats.snapshot() == before
    cache.clear_memory()  # a new worker or a new run: the disk entry answers
    from_disk = tlcore.image_statistics(path, channels=0, timepoints=(0, 10))
    assert from_disk.cached == "disk" and read_stats.snapshot() == before
    np.testing.assert_array_equal(from_disk.percentiles, first.percentiles)
    assert len(list(stats_dir.glob("*.json"))) == 1
    # Other arguments are other entries.
    other = tlcore.image_statistics(path, channels=0, timepoints=(10, 20))
    assert other.cached is None and read_stats.snapshot() != before


def test_changed_file_is_estimated_again(synthetic_store: Callable[..., Path]) -> None:
    import os

    store = synthetic_store(shape=(2, 1, 1, 32, 32))
    first = tlcore.image_statistics(store)
    meta = store / "zarr.json"
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 10**9))
    cache.clear_memory()
    again = tlcore.image_statistics(store)
    assert first.cached is None and again.cached is None


def test_pyramid_reads_a_coarse_level(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=(4, 2, 4, 256, 256), chunks=(1, 1, 1, 64, 64), n_levels=4)
    full = exact(store)
    stats = tlcore.image_statistics(store, percentiles=(1.0, 99.8), min_voxels=40_000, pyramid=True)
    assert stats.source_level == 2  # 4 x 4 x 64 x 64 = 65,536 voxels; level 3 has 16,384
    assert stats.exact and stats.n_voxels == 4 * 4 * 64 * 64
    assert stats.bytes_read <= 0.07 * full.nbytes
    assert relative_error(stats, full) < 0.02


def test_arguments_are_checked(testdata: Path) -> None:
    path = testdata / "nd2/example-timelapse.nd2"
    with pytest.raises(IndexError, match="channel 3"):
        tlcore.image_statistics(path, channels=3)
    with pytest.raises(IndexError, match="timepoint 99"):
        tlcore.image_statistics(path, timepoints=[99])
    with pytest.raises(ValueError, match="percentiles"):
        tlcore.image_statistics(path, percentiles=(101,))
    stats = tlcore.image_statistics(path, percentiles=(1.0, 99.8))
    with pytest.raises(KeyError, match="estimated"):
        stats.percentile(50, 0)
    assert stats.percentile(99.8, 0) == stats.percentiles[0, 1]


def test_plan_spreads_tiles_over_the_grid() -> None:
    level = Level(0, (10, 1, 8, 1024, 1024), chunks=(1, 1, 8, 256, 256))
    todo = plan(level, list(range(10)), level.chunks or (), budget=2**20)
    assert not todo.whole and todo.voxels <= 2**20
    assert len({b[0] for b in todo.boxes}) == 10  # every timepoint is visited
    assert len(todo.boxes) >= 64
    levels = [Level(i, (10, 1, 8, 1024 >> i, 1024 >> i)) for i in range(4)]
    assert choose_level(levels, 0, 10, min_voxels=2**21) == 2
    assert choose_level(levels, 0, 1, min_voxels=2**30) == 0
