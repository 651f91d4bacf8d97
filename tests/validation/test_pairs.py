"""Validation of rows with several images: each image checked, grids compared, every problem
naming the row and the image's own column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import tlcore
from tlcore.sampling.manifest import Columns
from tlcore.validation import validate_manifest

COLUMNS = Columns(
    split_column=None,
    images={"target": {"path": "target_path", "channel": "target_channel"}},
)


@pytest.fixture
def frame(synthetic_store: Callable[..., Path], tmp_path: Path) -> pd.DataFrame:
    raw = synthetic_store("raw.ome.zarr", shape=(4, 2, 2, 32, 32))
    good = synthetic_store("good.ome.zarr", shape=(4, 1, 2, 32, 32))
    wide = synthetic_store("wide.ome.zarr", shape=(4, 1, 2, 32, 40))
    coarse = synthetic_store("coarse.ome.zarr", shape=(4, 1, 2, 32, 32),
                             pixel_sizes_um=(1.0, 0.5, 0.5))  # fmt: skip
    return pd.DataFrame({
        "path": [str(raw)] * 5,
        "target_path": [str(good), str(wide), str(tmp_path / "gone.ome.zarr"), str(good),
                        str(coarse)],
        "target_channel": ["0", "", "", "3", ""],
    })  # fmt: skip


def test_every_image_is_checked_and_named(frame: pd.DataFrame) -> None:
    report = validate_manifest(frame, COLUMNS)
    errors = {(p.row, p.column): p for p in report.errors}
    assert 0 not in {row for row, _ in errors}
    assert "grid" in errors[(1, "target_path")].problem
    assert "(4, 2, 32, 40)" in errors[(1, "target_path")].problem
    assert "does not exist" in errors[(2, "target_path")].problem
    assert "channel 3" in errors[(3, "target_channel")].problem
    assert "pixel size" in errors[(4, "target_path")].problem
    assert "'target' image" in str(errors[(3, "target_channel")])


def test_the_datamodule_refuses_a_bad_pair(frame: pd.DataFrame) -> None:
    dm = tlcore.RandomTimelapseDatamodule(
        frame, split_column=None, image_columns={"raw": "path", "target": "target_path"},
        channel_columns={"target": "target_channel"},
    )  # fmt: skip
    with pytest.raises(tlcore.ValidationError, match="target_path"):
        dm.setup("fit")
    good = tlcore.RandomTimelapseDatamodule(
        frame.iloc[:1], split_column=None, image_columns={"raw": "path", "target": "target_path"},
        channel_columns={"target": "target_channel"},
    )  # fmt: skip
    good.setup("fit")
    assert good.dataset("train")[0]["target"].shape[0] == 1


def test_a_missing_image_column_is_named(frame: pd.DataFrame) -> None:
    columns = Columns(split_column=None, images={"target": {"path": "gt"}})
    report = validate_manifest(frame, columns)
    assert any("'gt'" in p.problem for p in report.errors)
