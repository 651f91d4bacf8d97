"""The example configs in configs/ instantiate with Hydra and train with Lightning's Trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


class _AnyChannels(torch.nn.Module):
    """A denoiser that works for any channel count: one shared conv over each channel."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
        self.conv = conv(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return self.conv(x.reshape(b * c, 1, *x.shape[2:])).reshape(x.shape)


def _module(spatial_dims: int, seen: list[dict[str, Any]]) -> Any:
    import lightning as L

    class Model(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _AnyChannels(spatial_dims)

        def _loss(self, batch: dict[str, Any]) -> torch.Tensor:
            x = batch["raw"]
            if x.ndim == spatial_dims + 3:  # B, T, C, ...: predict the last frame
                prediction = self.net(x[:, -2])
                return (prediction - x[:, -1]).pow(2).mean()
            target = batch.get("target", x)
            return (self.net(x) - target).pow(2).mean()

        def training_step(self, batch: dict[str, Any], index: int) -> torch.Tensor:
            seen.append({k: tuple(v.shape) for k, v in batch.items() if torch.is_tensor(v)})
            return self._loss(batch)

        def validation_step(self, batch: dict[str, Any], index: int) -> None:
            self.log("val_loss", self._loss(batch), batch_size=batch["raw"].shape[0])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return Model()


@pytest.mark.parametrize(
    ("config", "shape", "expect"),
    [
        ("denoise_3d.yaml", (10, 1, 16, 80, 80), (4, 1, 16, 64, 64)),
        ("next_frame.yaml", (10, 2, 8, 80, 80), (2, 4, 2, 8, 64, 64)),
        ("restoration_2d.yaml", (12, 1, 1, 48, 48), (4 * 3, 1, 32, 32)),
    ],
)
def test_config_instantiates_and_trains(
    synthetic_store: Callable[..., Path],
    tmp_path: Path,
    config: str,
    shape: tuple[int, ...],
    expect: tuple[int, ...],
) -> None:
    import hydra.utils
    import lightning as L
    from omegaconf import OmegaConf

    stores = [synthetic_store(f"t{i}.ome.zarr", shape=shape, chunks=(1, 1, 8, 32, 32), seed=i)
              for i in range(3)]  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        {
            "path": [s.name for s in stores],
            "channel": ["", "", ""],
            "split": ["train", "train", "val"],
        }
    ).to_csv(manifest, index=False)  # fmt: skip  (relative paths: resolved against the CSV)
    cfg = OmegaConf.load(CONFIGS / config)
    cfg.path = str(manifest)
    cfg.num_workers = 0 if config != "denoise_3d.yaml" else 2
    datamodule = hydra.utils.instantiate(cfg)
    seen: list[dict[str, Any]] = []
    spatial_dims = int(cfg.spatial_dims)
    L.Trainer(
        max_steps=3, limit_val_batches=1, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    ).fit(_module(spatial_dims, seen), datamodule)  # fmt: skip
    assert len(seen) == 3
    assert seen[0]["raw"] == expect
    if config == "denoise_3d.yaml":
        assert seen[0]["target"] == expect  # the clean copy made before the noise
