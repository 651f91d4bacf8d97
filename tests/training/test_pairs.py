"""Rows with several images: each key loaded at the same timepoints and cropped with one box;
the target in the batch is a direct read of the target file at the recorded box."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import tlcore
from tlcore.statistics import cache

SHAPE = (6, 2, 4, 40, 48)


@pytest.fixture
def pairs(synthetic_store: Callable[..., Path]) -> pd.DataFrame:
    raws = [synthetic_store(f"raw{i}.ome.zarr", shape=SHAPE, chunks=(1, 1, 2, 16, 16), seed=i)
            for i in range(2)]  # fmt: skip
    targets = [
        synthetic_store(f"gt{i}.ome.zarr", shape=(6, 3, 4, 40, 48), chunks=(1, 1, 4, 40, 48),
                        seed=10 + i)
        for i in range(2)
    ]  # fmt: skip
    return pd.DataFrame({
        "path": [str(p) for p in raws], "target_path": [str(p) for p in targets],
        "channel": ["0", "1"], "target_channel": ["2", "1"], "split": ["train", "train"],
    })  # fmt: skip


def _direct(path: str, t: Any, channels: list[int], start: tuple[int, ...], size: tuple[int, ...]):
    data = tlcore.open_lazy(path).data
    ts = t if isinstance(t, list) else [t]
    box = tuple(slice(s, s + n) for s, n in zip(start, size))
    parts = [np.asarray(data[(ti, channels, *box)].compute()) for ti in ts]
    return np.concatenate(parts, axis=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_target_equals_a_direct_read_at_the_recorded_box(pairs: pd.DataFrame, workers: int) -> None:
    dm = tlcore.RandomTimelapseDatamodule(
        pairs, image_columns={"raw": "path", "target": "target_path"},
        channel_columns={"raw": "channel", "target": "target_channel"}, patch_shape=(2, 16, 16),
        batch_size=2, num_workers=workers, samples_per_epoch={"train": 6}, num_timepoints=2,
    )  # fmt: skip
    dm.setup("fit")
    n = 0
    for batch in dm.train_dataloader():
        assert batch["raw"].shape[:3] == batch["target"].shape[:3] == (2, 2, 1)
        for i in range(2):
            raw_meta, target_meta = batch["raw_meta"][i], batch["target_meta"][i]
            assert raw_meta["path"] != target_meta["path"]
            assert target_meta["path"] == batch["target_path"][i]
            assert raw_meta["crop_start"] == target_meta["crop_start"]
            assert raw_meta["timepoints"] == target_meta["timepoints"]
            expected = _direct(
                target_meta["path"], target_meta["timepoints"], target_meta["channels"],
                target_meta["crop_start"], target_meta["crop_size"],
            )  # fmt: skip
            got = batch["target"][i].reshape(expected.shape).numpy()
            np.testing.assert_array_equal(got, expected.astype(np.float32))
            raw = _direct(raw_meta["path"], raw_meta["timepoints"], raw_meta["channels"],
                          raw_meta["crop_start"], raw_meta["crop_size"])  # fmt: skip
            np.testing.assert_array_equal(batch["raw"][i].reshape(raw.shape).numpy(), raw)
            n += 1
    assert n == 6


def test_a_key_without_channel_column_takes_every_channel(pairs: pd.DataFrame) -> None:
    dm = tlcore.RandomTimelapseDatamodule(
        pairs, image_columns={"raw": "path", "target": "target_path"}, patch_shape=(2, 16, 16),
        validate=False,
    )  # fmt: skip
    dm.setup("fit")
    sample = dm.dataset("train")[0]
    assert sample["raw"].shape[0] == 1 and sample["target"].shape[0] == 3
    assert sample["target_C"] == "" and sample["raw_C"] in ("0", "1")


def test_unknown_key_in_channel_columns_is_an_error(pairs: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="seg"):
        tlcore.RandomTimelapseDatamodule(pairs, image_columns={"raw": "path"},
                                         channel_columns={"seg": "channel"})  # fmt: skip


def test_normalize_by_image_in_a_pair_pipeline(
    pairs: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monai.transforms import Compose

    monkeypatch.setenv(cache.STATS_ENV, str(tmp_path / "stats"))
    cache.clear_memory()
    keys = ["raw", "target"]
    norm = tlcore.NormalizeByImaged(keys=keys, lower=1.0, upper=99.8)
    pipeline = Compose([
        tlcore.LoadLazyd(keys="raw", **tlcore.vocabulary.image_fields("raw")),
        tlcore.LoadLazyd(keys="target", **tlcore.vocabulary.image_fields("target")),
        tlcore.RandLazyCropd(keys=keys, roi_size=(2, 16, 16)),
        tlcore.ComputeDaskd(keys=keys),
        norm,
    ])  # fmt: skip
    dm = tlcore.RandomTimelapseDatamodule(
        pairs, transforms=pipeline, image_columns={"raw": "path", "target": "target_path"},
        channel_columns={"raw": "channel", "target": "target_channel"}, batch_size=2,
    )  # fmt: skip
    dm.setup("fit")
    assert len(norm.table) >= 4  # both files of both keys, before any sample
    batch = next(iter(dm.train_dataloader()))
    meta = batch["target_meta"][0]
    stats = tlcore.image_statistics(meta["path"], percentiles=(1.0, 99.8))
    c = meta["channels"][0]
    lo, hi = stats.percentiles[c]
    direct = _direct(meta["path"], meta["timepoints"], [c], meta["crop_start"], meta["crop_size"])
    expected = (direct.astype(np.float64) - lo) / (hi - lo)
    got = batch["target"][0][:1].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert isinstance(batch["target"], torch.Tensor)
