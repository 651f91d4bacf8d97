"""Timepoint draws, epoch orders and distributed shares: pure functions of the seed."""

from __future__ import annotations

import numpy as np
import pytest

from tlcore.sampling import (
    TimeRange,
    epoch_rows,
    rank_positions,
    resolve_range,
    rng_for,
    sample_timepoints,
)


def test_resolve_range_semantics() -> None:
    assert resolve_range(None, None, 10) == TimeRange(0, 10)
    assert resolve_range(0, -1, 10) == TimeRange(0, 10)  # -1: to the end, last one included
    assert resolve_range(2, 5, 10) == TimeRange(2, 5)  # stop exclusive
    assert len(resolve_range(0, 100, 100)) == 100
    assert resolve_range(-3, None, 10) == TimeRange(7, 10)
    with pytest.raises(ValueError, match="beyond the file's 10"):
        resolve_range(0, 11, 10)
    with pytest.raises(ValueError, match="outside the file's 10"):
        resolve_range(10, None, 10)
    with pytest.raises(ValueError, match="empty"):
        resolve_range(5, 3, 10)


@pytest.mark.parametrize("seed", range(20))
def test_modes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    window = TimeRange(10, 60)
    random = sample_timepoints(rng, window, 5, "random")
    assert len(set(random)) == 5 and random == sorted(random)
    assert all(10 <= t < 60 for t in random)
    seq = sample_timepoints(rng, window, 7, "sequential")
    assert seq == list(range(seq[0], seq[0] + 7)) and seq[0] >= 10 and seq[-1] < 60
    uni = sample_timepoints(rng, window, 8, "uniform")
    assert len(set(np.diff(uni))) == 1 and np.diff(uni)[0] == 50 // 8
    assert uni[0] >= 10 and uni[-1] < 60


def test_every_start_and_phase_is_reachable() -> None:
    window = TimeRange(0, 10)
    starts = {
        sample_timepoints(rng_for(1, "train", 0, p), window, 4, "sequential")[0] for p in range(400)
    }
    assert starts == set(range(7))
    phases = {
        sample_timepoints(rng_for(1, "train", 0, p), window, 3, "uniform")[0] for p in range(400)
    }
    assert phases == set(range(4))  # step 3: phases 0..3 keep the last one inside


def test_too_few_timepoints_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"holds 3 timepoint.*num_timepoints=5"):
        sample_timepoints(np.random.default_rng(0), TimeRange(0, 3), 5, "random")
    with pytest.raises(ValueError, match="timepoint_sampling must be one of"):
        sample_timepoints(np.random.default_rng(0), TimeRange(0, 3), 1, "shuffle")


def test_draws_depend_only_on_the_key() -> None:
    a = rng_for(7, "train", 3, 11).integers(0, 1 << 30, 4)
    b = rng_for(7, "train", 3, 11).integers(0, 1 << 30, 4)
    assert np.array_equal(a, b)
    for other in (rng_for(8, "train", 3, 11), rng_for(7, "val", 3, 11), rng_for(7, "train", 4, 11)):
        assert not np.array_equal(a, other.integers(0, 1 << 30, 4))


def test_epoch_rows() -> None:
    e0 = epoch_rows(10, 10, 0, "train", 0, shuffle=True)
    e1 = epoch_rows(10, 10, 0, "train", 1, shuffle=True)
    assert sorted(e0) == list(range(10)) and sorted(e1) == list(range(10))
    assert not np.array_equal(e0, e1)
    long = epoch_rows(4, 10, 0, "train", 0, shuffle=True)
    assert np.bincount(long, minlength=4).tolist() in (
        [3, 3, 2, 2],
        [3, 2, 3, 2],
        [3, 2, 2, 3],
        [2, 3, 3, 2],
        [2, 3, 2, 3],
        [2, 2, 3, 3],
    )
    assert epoch_rows(3, 7, 0, "val", 5, shuffle=False).tolist() == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize(("length", "world"), [(12, 2), (13, 2), (10, 3), (5, 4)])
def test_rank_shares_are_disjoint_and_cover_the_epoch(length: int, world: int) -> None:
    shares = [rank_positions(length, r, world) for r in range(world)]
    assert len({len(s) for s in shares}) == 1  # every rank runs the same number of steps
    flat = [p for s in shares for p in s]
    assert len(flat) == len(set(flat))
    assert set(range(length)) <= set(flat)
    if length % world == 0:
        assert set(flat) == set(range(length))
