"""Validation in the datamodule, the cost estimate, the skip policy, workers that die or stall,
the worker start methods, and an epoch that writes nothing."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import tlcore
from tlcore.cli import main
from tlcore.sampling.manifest import read_manifest
from tlcore.testing import iowatch
from tlcore.training.dataset import SampleError, TimelapseDataset
from tlcore.training.loader import WorkerError
from tlcore.validation import ValidationError, validate_manifest
from tlcore.validation.cost import expected_chunks

SHAPE = (8, 2, 2, 32, 32)


@pytest.fixture
def stores(synthetic_store: Callable[..., Path]) -> list[Path]:
    return [
        synthetic_store(f"s{i}.ome.zarr", shape=SHAPE, chunks=(1, 1, 1, 16, 16), seed=i)
        for i in range(2)
    ]


def _frame(paths: list[Any], splits: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {"path": [str(p) for p in paths], "split": splits or ["train"] * len(paths)}
    )


def _trainer(root: Path, **kwargs: Any) -> Any:
    import lightning as L

    kwargs.setdefault("max_epochs", 1)
    return L.Trainer(
        default_root_dir=str(root), accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def _module() -> Any:
    import lightning as L

    class Tiny(L.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: dict[str, Any], index: int) -> torch.Tensor:
            loss: torch.Tensor = (batch["raw"].mean() - self.w).pow(2)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Tiny()


def test_setup_validates_every_row_at_once(stores: list[Path], tmp_path: Path) -> None:
    frame = _frame([stores[0], tmp_path / "a.nd2", stores[1], tmp_path / "b.nd2"])
    frame["channel"] = ["0", "0", "4", "0"]
    dm = tlcore.RandomTimelapseDatamodule(frame, patch_shape=(1, 16, 16))
    with pytest.raises(ValidationError) as info:
        dm.setup("fit")
    assert {(p.row, p.column) for p in info.value.report.errors} == {
        (1, "path"), (2, "channel"), (3, "path")
    }  # fmt: skip
    assert "3 problem(s)" in str(info.value) and "a.nd2" in str(info.value)
    off = tlcore.RandomTimelapseDatamodule(frame, patch_shape=(1, 16, 16), validate=False)
    off.setup("fit")  # turned off: builds without opening a file
    with pytest.warns(UserWarning, match="duplicates"):
        tlcore.RandomTimelapseDatamodule(_frame([stores[0]] * 2)).setup("fit")


def test_cost_estimate(stores: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    frame = _frame(stores)
    frame["channel"] = ["1", "0,1"]
    report = validate_manifest(frame, num_timepoints=2, patch_shape=(1, 8, 8), batch_size=4)
    cost = report.costs["train"]
    assert (cost.rows, cost.files, cost.timepoints) == (2, 2, 16)
    # uint16 crops of 1x8x8, 2 timepoints: 1 and 2 channels
    assert cost.sample_bytes == (2 * 1 + 2 * 2) * 64 * 2 / 2
    # an 8-wide window over 16-wide chunks of a 32-wide axis touches 1.3 chunks on average
    per_axis = expected_chunks(32, 8, 16)
    assert per_axis == pytest.approx(1 + 7 / 25)
    assert cost.decoded_bytes == pytest.approx((2 * 1 + 2 * 2) / 2 * (per_axis * 16) ** 2 * 2)
    assert cost.amplification == pytest.approx(cost.decoded_bytes / cost.sample_bytes)
    assert cost.worker_bytes > 8 * cost.decoded_bytes
    assert main(["validate", str(_csv(frame, stores[0])), "--patch-shape", "1", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert "OK: 2 row(s), 2 file(s)" in out and "worker mem" in out


def _csv(frame: pd.DataFrame, near: Path) -> Path:
    path = near.parent / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def test_raise_names_file_row_scene_and_timepoints(stores: list[Path]) -> None:
    (row,) = read_manifest(_frame([stores[0]]))["train"]
    ds = TimelapseDataset([row], patch_shape=(4, 16, 16))  # taller than Z=2
    with pytest.raises(SampleError, match=r"DataFrame row 0 \(.*s0\.ome\.zarr\).*scene 0, T=\d"):
        ds[0]


def test_skips_are_deterministic_counted_and_dropped(stores: list[Path], tmp_path: Path) -> None:
    rows = read_manifest(_frame([stores[0], tmp_path / "gone.ome.zarr", stores[1]]))["train"]

    def make() -> TimelapseDataset:
        return TimelapseDataset(rows, patch_shape=(1, 16, 16), on_error="skip",
                                samples_per_epoch=12, seed=5, drop_after=2)  # fmt: skip

    first, second = make(), make()
    with pytest.warns(RuntimeWarning, match="gone.ome.zarr failed 2 times and is dropped"):
        a = [first[(1, p)] for p in range(12)]
    b = [second[(1, p)] for p in reversed(range(12))][::-1]  # another order, same samples
    skipped = sum(s["skipped"] for s in a)
    assert skipped >= 2 and first.skips[str(tmp_path / "gone.ome.zarr")] == 2
    assert str(tmp_path / "gone.ome.zarr") in first.dropped
    for x, y in zip(a, b):
        assert (x["original_path"], x["T"], x["skipped"]) == (
            y["original_path"],
            y["T"],
            y["skipped"],
        )
        assert torch.equal(x["raw"], y["raw"])
    assert all("gone" not in s["original_path"] for s in a)
    with pytest.raises(SampleError, match="redraws all failed"), pytest.warns(RuntimeWarning):
        TimelapseDataset(rows[1:2], on_error="skip", max_redraws=2)[0]


def test_skips_reach_lightning_as_a_metric(stores: list[Path], tmp_path: Path) -> None:
    frame = _frame([stores[0], tmp_path / "gone.ome.zarr", stores[1]])
    dm = tlcore.RandomTimelapseDatamodule(
        frame, patch_shape=(1, 16, 16), batch_size=2, samples_per_epoch=6, on_error="skip",
        validate=False,
    )  # fmt: skip
    trainer = _trainer(tmp_path)
    trainer.fit(_module(), dm)
    total = sum(dm.skips.values())
    assert total >= 1 and set(dm.skips) == {str(tmp_path / "gone.ome.zarr")}
    assert float(trainer.callback_metrics["tlcore/skipped_samples"]) == total


class _Kill:
    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGKILL)
        return sample


class _Block:
    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        threading.Event().wait()  # a read that never returns
        return sample


@pytest.mark.parametrize(
    ("transform", "timeout", "pattern"),
    [(_Kill(), 60.0, "a worker died"), (_Block(), 2.0, "no batch came back within timeout=2")],
    ids=["killed", "stalled"],
)
def test_dead_or_stalled_workers_end_the_run(
    stores: list[Path], transform: Any, timeout: float, pattern: str
) -> None:
    dm = tlcore.RandomTimelapseDatamodule(
        _frame(stores), transforms=transform, num_workers=1, worker_timeout=timeout,
        multiprocessing_context="fork",
    )  # fmt: skip
    dm.setup("fit")
    with pytest.raises(WorkerError, match=pattern):
        next(iter(dm.train_dataloader()))


def _batches(stores: list[Path], **kwargs: Any) -> list[tuple[Any, ...]]:
    dm = tlcore.RandomTimelapseDatamodule(
        _frame(stores), patch_shape=(1, 16, 16), batch_size=2, samples_per_epoch=4, seed=1,
        **kwargs,
    )  # fmt: skip
    dm.setup("fit")
    return [
        (b["row"].tolist(), b["T"].tolist(), b["raw"].sum().item()) for b in dm.train_dataloader()
    ]


@pytest.mark.parametrize(
    "method",
    ["fork", pytest.param("forkserver", marks=pytest.mark.slow),
     pytest.param("spawn", marks=pytest.mark.slow)],
)  # fmt: skip
def test_worker_start_methods(stores: list[Path], method: str) -> None:
    expected = _batches(stores)
    assert _batches(stores, num_workers=2, multiprocessing_context=method) == expected


def test_validation_and_an_epoch_write_nothing(
    stores: list[Path], testdata: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tlcore_nd2")
    names = ["nd2/example-timelapse.nd2", "ome-zarr/image-04.zarr", "tiff/stuck.tif",
             "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi"]  # fmt: skip
    real = [testdata / name for name in names]
    roots = [*real, *stores]
    frame = _frame([*real, *stores])
    frame["channel"] = ["0"] * len(frame)
    csv = tmp_path / "run" / "manifest.csv"
    csv.parent.mkdir()
    frame.to_csv(csv, index=False)
    before = iowatch.fingerprint(roots)
    with iowatch.watch(*roots) as seen:
        assert main(["validate", str(csv), "--patch-shape", "1", "32", "32"]) == 0
        dm = tlcore.RandomTimelapseDatamodule(
            str(csv), patch_shape=(1, 32, 32), batch_size=2, samples_per_epoch=8
        )
        _trainer(tmp_path / "run").fit(_module(), dm)
    assert seen.opened and not seen.writes, [str(a) for a in seen.writes]
    assert iowatch.describe_changes(before, iowatch.fingerprint(roots)) == []
    assert "OK: 6 row(s)" in capsys.readouterr().out
