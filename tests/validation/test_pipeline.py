"""The dry run of each split's transforms (tlcore.validation.pipeline): every reason the first
epoch's batches cannot be formed, reported in setup() before any worker starts, naming the rows,
the files, the step and the fix; and the worker error that remains is one short message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    EnsureChannelFirstd,
    RandRotate90d,
    RandSpatialCropd,
)

import tlcore
from tlcore import BioIOImageLoaderd, ComputeDaskd, RandLazyCropd
from tlcore.cli import main
from tlcore.testing import iowatch
from tlcore.training.dataset import SampleError
from tlcore.validation import ValidationError


@pytest.fixture
def files(synthetic_store: Callable[..., Path]) -> list[Path]:
    return [
        synthetic_store("big.ome.zarr", shape=(3, 2, 8, 64, 64), chunks=(1, 1, 8, 32, 32)),
        synthetic_store("small.ome.zarr", shape=(3, 2, 8, 48, 40), chunks=(1, 1, 8, 32, 32)),
    ]


def _csv(tmp_path: Path, paths: list[Path], channels: list[str], splits: list[str]) -> Path:
    out = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(p) for p in paths], "channel": channels, "split": splits}).to_csv(
        out, index=False
    )
    return out


def _good(roi: tuple[int, ...] = (8, 32, 32)) -> Any:
    return Compose([
        BioIOImageLoaderd(keys=["raw"], path_key="original_path", dask_load=True),
        RandSpatialCropd(keys="raw", roi_size=roi, random_size=False),
        ComputeDaskd(keys="raw", dtype="float32"),
        RandRotate90d(keys="raw", prob=0.5, spatial_axes=[1, 2]),
    ])  # fmt: skip


def _errors(dm: Any, stage: str = "fit") -> list[str]:
    with pytest.raises(ValidationError) as info:
        dm.setup(stage)
    return [str(p) for p in info.value.report.errors]


def test_every_reason_at_once_before_any_worker(files: list[Path], tmp_path: Path) -> None:
    manifest = _csv(tmp_path, [files[0], files[1], files[0], files[1]], ["0,1", "1", "0", ""],
                    ["train", "train", "val", "val"])  # fmt: skip
    train = Compose([
        BioIOImageLoaderd(keys=["raw"], path_key="original_path", dask_load=True),
        EnsureChannelFirstd(keys="raw", channel_dim="no_channel"),
        RandSpatialCropd(keys="raw", roi_size=[8, 56, 56], random_size=False),
        RandRotate90d(keys="raw", prob=0.5, spatial_axes=[1, 2]),
    ])  # fmt: skip
    dm = tlcore.RandomTimelapseDatamodule(manifest, transforms={"train": train}, num_workers=2)
    errors = _errors(dm)
    text = "\n".join(errors)
    # channel counts, rows named, per split
    assert "'train' rows load different numbers of channels" in text
    assert "row 1: 1 channel(s) (channel = '1')" in text and "row 0: 2 channel(s)" in text
    assert "'val' rows load different numbers of channels" in text
    # EnsureChannelFirstd: remove it (not "move it after ComputeDaskd")
    ensure = next(e for e in errors if "EnsureChannelFirstd (step 1" in e)
    assert "Remove it" in ensure and "Move it" not in ensure
    assert any("RandRotate90d (step 3" in e and "Move it after ComputeDaskd" in e for e in errors)
    assert any("no ComputeDaskd computes 'raw'" in e and "after RandSpatialCropd (step 2)" in e
               for e in errors)  # fmt: skip
    # the roi larger than one file: file and roi named
    roi = next(e for e in errors if "roi_size (8, 56, 56)" in e)
    assert "small.ome.zarr" in roi and "(8, 48, 40)" in roi and "row 1" in roi
    # val got no transforms and there is no patch_shape
    assert any("the 'val' split has no transforms and no patch_shape" in e and
               "give transforms for 'val'" in e for e in errors)  # fmt: skip
    assert dm._loaders == {}


def test_channel_first_on_an_eager_array_names_the_step_that_added_the_axis(
    files: list[Path], tmp_path: Path
) -> None:
    manifest = _csv(tmp_path, [files[0]], ["0"], ["train"])
    train = Compose([
        BioIOImageLoaderd(keys=["raw"], dask_load=False),
        EnsureChannelFirstd(keys="raw", channel_dim="no_channel"),
        RandRotate90d(keys="raw", prob=0.01, spatial_axes=[1, 2]),  # forced to run in the dry run
        CenterSpatialCropd(keys="raw", roi_size=[8, 32, 32]),
    ])  # fmt: skip
    errors = _errors(tlcore.RandomTimelapseDatamodule(manifest, transforms=train))
    assert len(errors) == 1, errors
    assert "RandRotate90d (step 2) fails: ValueError: Unsupported spatial_dims: 4" in errors[0]
    assert "remove EnsureChannelFirstd (step 1)" in errors[0]
    assert "(1, 8, 64, 64) into (1, 1, 8, 64, 64)" in errors[0]


def test_sizes_that_differ_with_no_crop(files: list[Path], tmp_path: Path) -> None:
    manifest = _csv(tmp_path, files, ["0", "0"], ["train", "train"])
    errors = _errors(tlcore.RandomTimelapseDatamodule(manifest, batch_size=2))
    assert len(errors) == 1, errors
    assert "different shapes with no fixed crop" in errors[0]
    assert "row 0 give (1, 8, 64, 64)" in errors[0] and "row 1 give (1, 8, 48, 40)" in errors[0]


def test_a_good_config_passes_reads_no_pixels_and_trains(files: list[Path], tmp_path: Path) -> None:
    manifest = _csv(tmp_path, files * 2, ["0"] * 4, ["train", "train", "val", "val"])
    dm = tlcore.RandomTimelapseDatamodule(
        manifest, transforms={"train": _good(), "val": _good()}, batch_size=2
    )

    def chunks(watch: iowatch.Watch) -> set[str]:
        return {p for p in watch.opened if "/c/" in p or p.rsplit("/", 1)[-1][:1].isdigit()}

    tlcore.readers.cache.clear()
    with iowatch.watch(tmp_path) as plain:
        assert tlcore.validate_manifest(manifest).ok
    tlcore.readers.cache.clear()
    with iowatch.watch(tmp_path) as dry:
        report = dm.check(("train", "val"))
    assert report.ok, report.format()
    # validate reads one chunk per file; the dry run of two splits adds none
    assert chunks(plain) and chunks(dry) == chunks(plain)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["raw"].shape) == (2, 1, 8, 32, 32)


def test_validate_config_cli(files: list[Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    manifest = _csv(tmp_path, files, ["0", "0"], ["train", "train"])
    config = tmp_path / "data.yaml"
    config.write_text(
        "_target_: tlcore.RandomTimelapseDatamodule\npath: elsewhere.csv\nbatch_size: 2\n"
        "num_workers: 4\ntransforms:\n  _target_: monai.transforms.Compose\n  transforms:\n"
        "    - {_target_: tlcore.BioIOImageLoaderd, keys: [raw], path_key: original_path}\n"
        "    - {_target_: tlcore.RandLazyCropd, keys: raw, roi_size: [8, 56, 56]}\n"
        "    - {_target_: tlcore.ComputeDaskd, keys: raw}\n"
    )
    assert main(["validate", str(manifest), "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "small.ome.zarr" in out and "roi_size (8, 56, 56)" in out
    assert "FAILED: 2 row(s), 2 file(s) checked; 1 error(s)" in out
    config.write_text(config.read_text().replace("56, 56", "32, 32"))
    assert main(["validate", str(manifest), "--config", str(config), "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out


def test_worker_error_is_one_short_message(
    files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _csv(tmp_path, [files[0]], ["0"], ["train"])
    pipeline = Compose([
        BioIOImageLoaderd(keys=["raw"]), RandLazyCropd(keys="raw", roi_size=(8, 32, 32)),
        ComputeDaskd(keys="raw"), EnsureChannelFirstd(keys="raw", channel_dim="no_channel"),
        RandRotate90d(keys="raw", prob=1.0, spatial_axes=[1, 2]),
    ])  # fmt: skip
    dm = tlcore.RandomTimelapseDatamodule(manifest, transforms=pipeline, validate=False,
                                          num_workers=1)  # fmt: skip
    dm.setup("fit")
    monkeypatch.delenv("TLCORE_DEBUG", raising=False)
    with pytest.raises(SampleError) as info:
        next(iter(dm.train_dataloader()))
    text = str(info.value)
    assert len(text.splitlines()) == 2, text
    for part in ("m.csv row 0", "big.ome.zarr", "train", "RandRotate90d",
                 "Unsupported spatial_dims: 4", "TLCORE_DEBUG=1"):  # fmt: skip
        assert part in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "Traceback" in info.value.worker_traceback  # type: ignore[attr-defined]
    monkeypatch.setenv("TLCORE_DEBUG", "1")
    with pytest.raises(SampleError) as info:
        next(iter(dm.train_dataloader()))
    assert "Original Traceback" in str(info.value)


def test_an_array_inside_a_store_says_to_open_the_store(files: list[Path], tmp_path: Path) -> None:
    manifest = _csv(tmp_path, [Path(f"{files[0]}/0")], ["0"], ["train"])
    report = tlcore.validate_manifest(manifest)
    assert not report.ok
    text = str(report.errors[0])
    assert (
        "is one zarr array inside a store" in text and f"open the store folder {files[0]}" in text
    )


def test_reader_warnings_once_per_file_and_counted(
    files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    store = tmp_path / "um.ome.zarr"
    shutil.copytree(files[0], store)
    meta = store / "zarr.json"
    meta.write_text(json.dumps(json.loads(meta.read_text())).replace('"micrometer"', '"um"'))
    manifest = _csv(tmp_path, [store, store], ["0", "0"], ["train", "train"])
    assert main(["validate", str(manifest), "--no-progress"]) == 0
    captured = capsys.readouterr()
    found = [line for line in captured.out.splitlines() if "OmeZarrWarning" in line]
    assert len(found) == 1 and "'um'" in found[0] and "row 0" in found[0]
    assert "4 warning(s)" in captured.out  # the unit, the duplicate row, no val, no test
    assert "OmeZarrWarning" not in captured.err


def test_sizes_that_differ_batch_one_at_a_time(files: list[Path], tmp_path: Path) -> None:
    """With batch_size 1 every sample is its own batch: different sizes are not a problem."""
    manifest = _csv(tmp_path, files, ["0", "0"], ["train", "train"])
    dm = tlcore.RandomTimelapseDatamodule(manifest, batch_size=1)
    dm.setup("fit")  # no ValidationError
    shapes = {tuple(batch["raw"].shape) for batch in dm.train_dataloader()}
    assert len(shapes) == 2  # the two files' sizes, one per batch
