"""The guides' YAML run as written, with only cyto_dl's names swapped for tlcore's (the table in
docs/migration.md): each either trains 2 steps or fails in setup() with every fix in one
message; the fixed versions train."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from tlcore.validation import ValidationError

NAMES = {
    "cyto_dl.datamodules.random_timelapse_datamodule.RandomTimelapseDatamodule":
        "tlcore.RandomTimelapseDatamodule",
    "cyto_dl.image.io.bioio_loader.BioIOImageLoaderd": "tlcore.BioIOImageLoaderd",
    "cyto_dl.image.io.BioIOImageLoaderd": "tlcore.BioIOImageLoaderd",
    "cyto_dl.image.transforms.ComputeDaskd": "tlcore.ComputeDaskd",
}  # fmt: skip

# The random timelapse guide's "Example: Training a Denoising Model", as written.
DENOISE = """
_target_: cyto_dl.datamodules.random_timelapse_datamodule.RandomTimelapseDatamodule
path: /data/microscopy/timelapse_metadata.csv
split_column: split
img_path_column: path
channel_column: channel
num_timepoints: 1
timepoint_sampling: random
spatial_dims: 3
seed: 42
num_workers: 8
batch_size: 16
pin_memory: True
transforms:
  train:
    _target_: monai.transforms.Compose
    transforms:
      - _target_: cyto_dl.image.io.bioio_loader.BioIOImageLoaderd
        path_key: original_path
        out_key: raw
        dask_load: True
        dtype: numpy.float32
      - _target_: monai.transforms.EnsureChannelFirstd
        keys: raw
        channel_dim: "no_channel"
      - _target_: monai.transforms.RandSpatialCropd
        keys: raw
        roi_size: [64, 128, 128]
        random_size: False
      - _target_: monai.transforms.RandFlipd
        keys: raw
        prob: 0.5
        spatial_axis: [0, 1, 2]
      - _target_: monai.transforms.RandRotate90d
        keys: raw
        prob: 0.5
        spatial_axes: [1, 2]
      - _target_: monai.transforms.RandGaussianNoised
        keys: raw
        prob: 1.0
        mean: 0.0
        std: 0.1
      - _target_: monai.transforms.NormalizeIntensityd
        keys: raw
        channel_wise: True
      - _target_: monai.transforms.ToTensord
        keys: raw
"""

# The lazy-loading guide's pipeline (its Python block, in the datamodule's YAML form).
LAZY = """
_target_: cyto_dl.datamodules.random_timelapse_datamodule.RandomTimelapseDatamodule
path: /path/to/timelapse_manifest.csv
spatial_dims: 3
batch_size: 2
transforms:
  train:
    _target_: monai.transforms.Compose
    transforms:
      - _target_: cyto_dl.image.io.BioIOImageLoaderd
        keys: [raw]
        path_key: original_path
        dask_load: true
        lazy_load: true
        dtype: float16
      - _target_: monai.transforms.RandSpatialCropd
        keys: [raw]
        roi_size: [64, 64, 64]
        random_size: false
      - _target_: cyto_dl.image.transforms.ComputeDaskd
        keys: [raw]
        dtype: float16
      - _target_: monai.transforms.RandFlipd
        keys: [raw]
        prob: 0.5
"""


def _swap(text: str) -> str:
    for old, new in NAMES.items():
        text = text.replace(old, new)
    return text


def _datamodule(text: str, manifest: Path, **overrides: Any) -> Any:
    import hydra.utils
    from omegaconf import OmegaConf

    config = OmegaConf.create(_swap(text))
    config.path = str(manifest)
    config.num_workers = 0  # the guides' 8 workers: not on a 2-core test machine
    config.batch_size = 2
    config.samples_per_epoch = {"train": 4, "val": 2}  # 2 training steps
    for key, value in overrides.items():
        OmegaConf.update(config, key, value, force_add=True)
    return hydra.utils.instantiate(config)


@pytest.fixture
def manifest(synthetic_store: Callable[..., Path], tmp_path: Path) -> Path:
    # the guide's seven columns; files with Z >= 64 so the guides' crops fit
    stores = [synthetic_store(f"m{i}.ome.zarr", shape=(3, 2, 64, 128, 128),
                              chunks=(1, 1, 32, 64, 64), seed=i) for i in range(2)]  # fmt: skip
    out = tmp_path / "manifest.csv"
    pd.DataFrame({
        "path": [str(s) for s in stores] * 2, "channel": ["0", "0", "1", "1"],
        "split": ["train", "train", "val", "val"], "scene": [0] * 4, "resolution": [0] * 4,
        "start": [0] * 4, "stop": [-1] * 4,
    }).to_csv(out, index=False)  # fmt: skip
    return out


def _train(dm: Any, root: Path) -> list[tuple[int, ...]]:
    import lightning as L

    seen: list[tuple[int, ...]] = []

    class Tiny(L.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: dict[str, Any], index: int) -> torch.Tensor:
            seen.append(tuple(batch["raw"].shape))
            return (batch["raw"].float().mean() - self.w).pow(2)

        def validation_step(self, batch: dict[str, Any], index: int) -> None:
            seen.append(tuple(batch["raw"].shape))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    L.Trainer(
        default_root_dir=str(root), accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, max_steps=2,
        limit_val_batches=1, num_sanity_val_steps=0, val_check_interval=2,
    ).fit(Tiny(), datamodule=dm)  # fmt: skip
    return seen


def test_denoise_guide_fails_in_setup_with_every_fix(manifest: Path) -> None:
    dm = _datamodule(DENOISE, manifest)
    with pytest.raises(ValidationError) as info:
        dm.setup("fit")
    text = str(info.value)
    assert "EnsureChannelFirstd (step 1" in text and "Remove it" in text
    for step in ("RandFlipd (step 3", "RandRotate90d (step 4", "RandGaussianNoised (step 5",
                 "NormalizeIntensityd (step 6", "ToTensord (step 7"):  # fmt: skip
        assert step in text and "Move it after ComputeDaskd" in text
    assert "Add ComputeDaskd(keys='raw', dtype='float32') after RandSpatialCropd (step 2)" in text
    assert "the 'val' split has no transforms and no patch_shape" in text
    assert dm._loaders == {}  # no DataLoader, no worker


def test_denoise_guide_fixed_trains(manifest: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    config = OmegaConf.create(_swap(DENOISE))
    steps = list(config.transforms.train.transforms)
    loader, crop, flip, rotate, noise, normalize = steps[0], *steps[2:7]
    compute = {"_target_": "tlcore.ComputeDaskd", "keys": "raw", "dtype": "float32"}
    config.transforms.train.transforms = [loader, crop, compute, flip, rotate, noise, normalize]
    center = {"_target_": "monai.transforms.CenterSpatialCropd", "keys": "raw",
              "roi_size": [64, 128, 128]}  # fmt: skip
    config.transforms.val = {"_target_": "monai.transforms.Compose",
                             "transforms": [loader, center, compute, normalize]}  # fmt: skip
    dm = _datamodule(OmegaConf.to_yaml(config), manifest)
    seen = _train(dm, tmp_path)
    assert seen[:2] == [(2, 1, 64, 128, 128)] * 2


def test_lazy_guide_as_written(manifest: Path, tmp_path: Path) -> None:
    dm = _datamodule(LAZY, manifest)
    with pytest.raises(ValidationError) as info:  # train only: val would read whole timepoints
        dm.setup("fit")
    errors = info.value.report.errors
    assert len(errors) == 1 and "the 'val' split has no transforms" in str(errors[0])
    # with a crop for the splits without transforms (or val transforms), it trains as written
    dm = _datamodule(LAZY, manifest, patch_shape=[64, 64, 64])
    seen = _train(dm, tmp_path)
    assert seen[0] == (2, 1, 64, 64, 64)
