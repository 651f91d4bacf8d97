"""NormalizeByImaged: the image's percentiles, not the crop's; folded timepoints and channels
each get their own; misplaced before ComputeDaskd it says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import tlcore
from tlcore.statistics import cache


@pytest.fixture(autouse=True)
def stats_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.STATS_ENV, str(tmp_path / "stats"))
    cache.clear_memory()


def test_scales_by_the_whole_image(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=(3, 2, 2, 32, 32))
    load = tlcore.LoadLazyd(keys="raw")
    load.guard = False
    sample = load({"original_path": str(store), "T": [0, 2], "C": "1,0"})
    crop_at = tlcore.RandLazyCropd(keys="raw", roi_size=(1, 4, 4))
    crop_at.set_random_state(seed=3)  # a fixed box: the last assertion depends on where it is
    sample = crop_at(sample)
    sample = tlcore.ComputeDaskd(keys="raw")(sample)
    crop = sample["raw"].clone()
    out = tlcore.NormalizeByImaged(keys="raw", lower=1, upper=99.8)(sample)["raw"]
    stats = tlcore.image_statistics(store, percentiles=(1, 99.8))
    for i, c in enumerate([1, 0, 1, 0]):  # t0c1, t0c0, t2c1, t2c0
        lo, hi = stats.percentiles[c]
        torch.testing.assert_close(out[i], (crop[i] - lo) / (hi - lo))
    # A crop's own percentiles would map each of its planes onto [0, 1]; the image's do not.
    assert all(float(out[i].max() - out[i].min()) < 0.999 for i in range(4))


def test_per_timepoint_and_clip(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=(3, 1, 1, 16, 16))
    meta = {"path": str(store), "scene": 0, "channels": [0], "n_timepoints": None,
            "timepoints": 2}  # fmt: skip
    data = torch.full((1, 1, 4, 4), 60000.0)
    norm = tlcore.NormalizeByImaged(keys="raw", per="timepoint", clip=True)
    out = norm({"raw": data, "raw_meta": meta})["raw"]
    assert float(out.max()) == 1.0
    assert next(iter(norm.table))[3] == 2


def test_misplaced_or_bad_arguments(synthetic_store: Callable[..., Path]) -> None:
    with pytest.raises(ValueError, match="lower"):
        tlcore.NormalizeByImaged(keys="raw", lower=50, upper=10)
    with pytest.raises(ValueError, match="per"):
        tlcore.NormalizeByImaged(keys="raw", per="crop")
    store = synthetic_store(shape=(1, 1, 1, 16, 16))
    load = tlcore.LoadLazyd(keys="raw")
    load.guard = False
    lazy = load({"original_path": str(store)})
    with pytest.raises(TypeError, match="after ComputeDaskd"):
        tlcore.NormalizeByImaged(keys="raw")(lazy)
    with pytest.raises(KeyError, match="raw_meta"):
        tlcore.NormalizeByImaged(keys="raw")({"raw": np.zeros((1, 2, 2))})
