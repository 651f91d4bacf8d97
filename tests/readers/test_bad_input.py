"""The bad-input matrix: every problem `tlcore validate` must find before training, each with
the row, the column and a message that says what is wrong (real files, real readers)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tlcore.cli import main
from tlcore.validation import Problem, Report, validate_manifest
from tlcore.validation.rows import _describe_failure


@pytest.fixture
def store(synthetic_store: Callable[..., Path]) -> Path:
    return synthetic_store("s.ome.zarr", shape=(6, 2, 2, 32, 32), chunks=(1, 1, 1, 16, 16))


def _check(tmp_path: Path, **columns: list[Any]) -> Report:
    columns.setdefault("split", ["train"] * len(columns["path"]))
    csv = tmp_path / "m.csv"
    pd.DataFrame(columns).to_csv(csv, index=False)
    return validate_manifest(str(csv))


def _only(report: Report, column: str | None, pattern: str) -> Problem:
    errors = report.errors
    assert len(errors) == 1, [str(p) for p in report.problems]
    (problem,) = errors
    assert problem.column == column, str(problem)
    assert pattern in str(problem), str(problem)
    return problem


def test_missing_file(tmp_path: Path) -> None:
    p = _only(_check(tmp_path, path=[str(tmp_path / "nope.nd2")]), "path", "does not exist")
    assert p.row == 0 and p.path is not None and p.path.endswith("nope.nd2") and p.fix


def test_directory_where_a_file_is_expected(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    _only(_check(tmp_path, path=[str(tmp_path / "folder")]), "path", "is a folder")


def test_unsupported_extension_names_the_plugin_to_install(
    tmp_path: Path, testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tlcore

    monkeypatch.setenv("TLCORE_DISABLE_READERS", "lif,bioio")
    tlcore.reset_registry()
    try:
        report = _check(
            tmp_path, path=[str(testdata / "lif" / "PR2729_frameOrderCombinedScanTypes.lif")]
        )
        _only(report, "path", "pip install")
    finally:
        monkeypatch.delenv("TLCORE_DISABLE_READERS")
        tlcore.reset_registry()
    odd = tmp_path / "notes.xyz"
    odd.write_text("not an image")
    _only(_check(tmp_path, path=[str(odd)]), "path", "no installed tlcore reader")


def test_truncated_file(tmp_path: Path, testdata: Path) -> None:
    source = testdata / "tiff" / "stuck.tif"
    cut = tmp_path / "cut.tif"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    _only(_check(tmp_path, path=[str(cut)]), "path", str(cut))


@pytest.mark.parametrize(
    ("name", "scene", "pattern"),
    [
        ("lif/LeicaLASX_wavelength-sweep_example.lif", 0, "lambda"),
        ("ome-tiff/FLIM-modulo-sample.ome.tif", 0, "Modulo"),
    ],
)
def test_unreadable_shared_samples(
    tmp_path: Path, testdata: Path, name: str, scene: int, pattern: str
) -> None:
    report = _check(tmp_path, path=[str(testdata / name)], scene=[scene])
    _only(report, "path", pattern)


def test_permission_denied(tmp_path: Path, store: Path) -> None:
    column, problem, fix = _describe_failure(PermissionError(13, "Permission denied"), "/x.nd2")
    assert column == "path" and "permission denied" in problem and "chmod" in fix
    if os.geteuid() == 0:
        pytest.skip("root reads any file: the real chmod case needs an ordinary user")
    locked = tmp_path / "locked.ome.zarr"
    shutil.copytree(store, locked)
    os.chmod(locked / "zarr.json", 0)
    _only(_check(tmp_path, path=[str(locked)]), "path", "ermission")


def test_channels_out_of_range_and_unknown_names(tmp_path: Path, store: Path) -> None:
    report = _check(tmp_path, path=[str(store)] * 3, channel=["5", "GFP", "0,1"])
    by_row = {p.row: p for p in report.errors}
    assert set(by_row) == {0, 1}, [str(p) for p in report.problems]
    assert "channel 5 is out of range" in str(by_row[0]) and by_row[0].column == "channel"
    assert "no channel named 'GFP'" in str(by_row[1]) and by_row[1].column == "channel"


def test_scene_missing_as_index_and_as_id(tmp_path: Path, testdata: Path) -> None:
    czi = str(testdata / "czi" / "WellD6-7_S2.czi")
    report = _check(tmp_path, path=[czi] * 4, scene=["7", "D9-D9", "D7-D7", "1"])
    by_row = {p.row: p for p in report.errors}
    assert set(by_row) == {0, 1}
    assert by_row[0].column == "scene" and "no scene 7" in str(by_row[0])
    assert by_row[1].column == "scene" and "'D9-D9'" in str(by_row[1]) and "D6-D6" in str(by_row[1])


def test_integer_looking_scene_ids_are_indices(tmp_path: Path, store: Path) -> None:
    report = _check(tmp_path, path=[str(store)] * 3, scene=["0", " 0 ", "0.0"])
    assert report.ok, [str(p) for p in report.problems]


def test_level_missing(tmp_path: Path, testdata: Path) -> None:
    zarr = str(testdata / "ome-zarr" / "image-04.zarr")
    report = _check(tmp_path, path=[zarr, zarr], resolution=["1", "2"])
    p = _only(report, "resolution", "level 2 does not exist")
    assert p.row == 1


def test_start_after_stop_and_stop_beyond_the_end(tmp_path: Path, store: Path) -> None:
    report = _check(tmp_path, path=[str(store)] * 3, start=["4", "0", ""], stop=["2", "9", "-1"])
    by_row = {p.row: p for p in report.errors}
    assert set(by_row) == {0, 1}, [str(p) for p in report.problems]
    assert by_row[0].column == "stop" and "not before stop" in str(by_row[0])
    assert by_row[1].column == "stop" and "beyond the file's 6 timepoint(s)" in str(by_row[1])


def test_nan_cells(tmp_path: Path, store: Path) -> None:
    nan = float("nan")
    frame = pd.DataFrame(
        {"path": [str(store), nan, str(store)], "split": ["train"] * 3,
         "start": [nan, 1.0, 2.5], "channel": [nan, nan, nan]}
    )  # fmt: skip
    report = validate_manifest(frame)
    by_row = {p.row: p for p in report.errors}
    assert set(by_row) == {1, 2}, [str(p) for p in report.problems]
    assert by_row[1].column == "path" and "empty" in by_row[1].problem
    assert by_row[2].column == "start" and "not an integer" in by_row[2].problem


def test_a_mix_of_channel_lists_and_single_channels(tmp_path: Path, store: Path) -> None:
    report = _check(tmp_path, path=[str(store)] * 2, channel=["0,1", "0"])
    assert report.ok and report.costs["train"].rows == 2


def test_empty_manifest_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    (problem,) = validate_manifest(str(empty)).errors
    assert "is empty" in problem.problem
    header = tmp_path / "header.csv"
    header.write_text("path,split\n")
    (problem,) = validate_manifest(str(header)).errors
    assert "no rows" in problem.problem


def test_missing_columns(tmp_path: Path, store: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(f"file,split\n{store},train\n")
    problems = validate_manifest(str(csv)).errors
    assert problems[0].column == "path" and "no path column 'path'" in problems[0].problem
    csv.write_text(f"path\n{store}\n")
    problems = validate_manifest(str(csv)).errors
    assert problems[0].column == "split" and "split_column=None" in problems[0].problem


def test_duplicated_rows_are_a_warning(tmp_path: Path, store: Path) -> None:
    report = _check(tmp_path, path=[str(store)] * 3, channel=["0", "0", "1"])
    assert report.ok
    (warning,) = [p for p in report.warnings if p.row is not None]
    assert warning.row == 1 and "duplicates" in warning.problem and "row 0" in warning.problem


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    csv = tmp_path / "latin1.csv"
    csv.write_bytes("path,split\nd\xe9j\xe0.nd2,train\n".encode("latin-1"))
    (problem,) = validate_manifest(str(csv)).errors
    assert "not UTF-8" in problem.problem and "save it as UTF-8" in problem.problem


def test_unknown_split_and_a_split_with_no_rows(tmp_path: Path, store: Path) -> None:
    report = _check(tmp_path, path=[str(store)] * 2, split=["train", "trian"])
    (p,) = report.errors
    assert p.row == 1 and p.column == "split" and "'trian' is not one of" in p.problem
    report = _check(tmp_path, path=[str(store)], split=["val"])
    assert any("no 'train' rows" in p.problem for p in report.errors)
    val = tmp_path / "val.csv"
    val.write_text("path\n")
    train = tmp_path / "train.csv"
    train.write_text(f"path\n{store}\n")
    report = validate_manifest({"train": str(train), "val": str(val)})
    (p,) = report.errors
    assert "'val' manifest has no usable rows" in p.problem and p.origin == str(val)


def test_every_problem_at_once_and_json(
    tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "m.csv"
    pd.DataFrame(
        {"path": [str(store), str(tmp_path / "gone.nd2"), str(store), str(store)],
         "split": ["train", "train", "val", "val"], "channel": ["0", "0", "9", "0"],
         "stop": ["", "", "", "99"]}
    ).to_csv(csv, index=False)  # fmt: skip
    assert main(["validate", str(csv), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    found = {(p["row"], p["column"]) for p in out["problems"] if p["severity"] == "error"}
    assert found == {(1, "path"), (2, "channel"), (3, "stop")}
    for p in out["problems"]:
        assert {"row", "column", "path", "problem"} <= set(p)
    assert main(["validate", str(csv)]) == 1
    text = capsys.readouterr().out
    assert "row 2, column 'channel'" in text and "FAILED" in text and "Fix:" in text
