"""``tlcore preview``: the crops training would draw, as a labelled PNG montage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tlcore.cli.preview import LABEL, TILE, preview


def test_preview_draws_what_training_draws(
    synthetic_store: Callable[..., Path], tmp_path: Path
) -> None:
    from PIL import Image

    from tlcore.training.datamodule import RandomTimelapseDatamodule

    stores = [synthetic_store(f"p{i}.ome.zarr", shape=(6, 2, 4, 64, 64), chunks=(1, 1, 4, 32, 32),
                              seed=i) for i in range(2)]  # fmt: skip
    manifest = pd.DataFrame({"path": [str(s) for s in stores], "split": "train", "channel": "0,1"})
    kwargs = dict(patch_shape=(4, 32, 32), num_timepoints=2, seed=5)
    out = preview(manifest, tmp_path / "preview.png", n=5, **kwargs)

    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (2 * (TILE + LABEL), 3 * TILE, 3)  # 5 tiles: a 3 x 2 grid
    for i in range(5):
        y, x = divmod(i, 3)
        tile = picture[y * (TILE + LABEL) : y * (TILE + LABEL) + TILE, x * TILE : (x + 1) * TILE]
        assert tile.std() > 5, f"tile {i} is blank"
        label = picture[
            y * (TILE + LABEL) + TILE : (y + 1) * (TILE + LABEL), x * TILE : (x + 1) * TILE
        ]
        assert label.max() > 0, f"tile {i} has no label"
    assert picture[TILE + LABEL :, 2 * TILE :].max() == 0  # the sixth cell stays empty

    # The first positions of epoch 0 are the training draws, whatever the epoch's length.
    dm = RandomTimelapseDatamodule(manifest, samples_per_epoch=40, **kwargs)
    dataset = dm.dataset("train")
    again = RandomTimelapseDatamodule(manifest, samples_per_epoch=5, **kwargs).dataset("train")
    for position in range(5):
        assert dataset[(0, position)]["T"] == again[(0, position)]["T"]


# ~25 s: two real `tlcore preview` processes (torch, MONAI and Lightning imported in each)
@pytest.mark.slow
def test_preview_command_with_arguments_and_with_a_config(
    synthetic_store: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    from PIL import Image

    store = synthetic_store("c.ome.zarr", shape=(4, 1, 16, 80, 80), chunks=(1, 1, 8, 40, 40))
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"path": [store.name], "split": ["train"]}).to_csv(manifest, index=False)
    config = Path(__file__).resolve().parents[2] / "configs" / "data" / "denoise_3d.yaml"
    for extra in (["--patch-shape", "8", "32", "32"], ["--config", str(config)]):
        out = tmp_path / f"preview{len(extra)}.png"
        result = subprocess.run(
            [sys.executable, "-m", "tlcore.cli", "preview", str(manifest), "--out", str(out),
             "-n", "4", *extra],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert f"wrote {out}" in result.stdout
        assert Image.open(out).size == (2 * TILE, 2 * (TILE + LABEL))


def test_a_pair_is_shown_side_by_side(synthetic_store: Callable[..., Path], tmp_path: Path) -> None:
    from PIL import Image

    from tlcore.cli.preview import GAP, _project, sample_picture
    from tlcore.training.datamodule import RandomTimelapseDatamodule

    raws = [synthetic_store(f"r{i}.ome.zarr", shape=(4, 1, 4, 48, 48), seed=i) for i in range(2)]
    targets = [synthetic_store(f"t{i}.ome.zarr", shape=(4, 2, 4, 48, 48), seed=10 + i)
               for i in range(2)]  # fmt: skip
    manifest = pd.DataFrame({
        "path": [str(s) for s in raws], "target_path": [str(s) for s in targets],
        "split": "train",
    })  # fmt: skip
    kwargs: dict[str, Any] = dict(
        image_columns={"raw": "path", "target": "target_path"}, patch_shape=(4, 32, 32), seed=3
    )
    out = preview(manifest, tmp_path / "pairs.png", n=4, **kwargs)

    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (2 * (TILE + LABEL), 2 * 2 * TILE, 3)  # 4 cells, each 2 tiles wide
    for i in range(4):
        y, x = divmod(i, 2)
        cell = picture[
            y * (TILE + LABEL) : y * (TILE + LABEL) + TILE, x * 2 * TILE : (x + 1) * 2 * TILE
        ]
        left, right = cell[:, :TILE], cell[:, TILE:]
        assert left.std() > 5 and right.std() > 5, f"cell {i}: an image is missing"

    # Each cell is the sample's raw, a gap, then its target (two channels: green-magenta).
    sample = RandomTimelapseDatamodule(manifest, samples_per_epoch=4, **kwargs).dataset("train")[
        (0, 0)
    ]
    drawn = sample_picture(sample, ["raw", "target"])
    raw, target = _project(sample["raw"], None), _project(sample["target"], None)
    assert drawn.shape == (32, 32 + GAP + 32, 3)
    np.testing.assert_array_equal(drawn[:, :32], raw)
    np.testing.assert_array_equal(drawn[:, 32 + GAP :], target)
    assert not np.array_equal(raw, target)
    assert not np.array_equal(target[..., 0], target[..., 1])  # two channels in colour

    # The command: --image-column puts the target beside the input.
    from tlcore.cli import main

    csv = tmp_path / "pairs.csv"
    manifest.to_csv(csv, index=False)
    png = tmp_path / "cli.png"
    argv = ["preview", str(csv), "--out", str(png), "-n", "2", "--patch-shape", "4", "32", "32",
            "--image-column", "target=target_path"]  # fmt: skip
    assert main(argv) == 0
    assert Image.open(png).size == (2 * 2 * TILE, TILE + LABEL)
