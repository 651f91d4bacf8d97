from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def tlcore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tlcore.cli", *args], capture_output=True, text=True, timeout=120,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip


def test_plugins_lists_ome_zarr() -> None:
    result = tlcore("plugins")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("ome-zarr"))
    assert "tlcore-ome-zarr" in line and ".ome.zarr" in line and line.endswith("loaded")

    plugins = json.loads(tlcore("plugins", "--json").stdout)
    (entry,) = [p for p in plugins if p["name"] == "ome-zarr"]
    assert entry["status"] == "loaded" and entry["error"] is None
    assert entry["distribution"] == "tlcore-ome-zarr" and entry["version"]


# What each readable shared store holds, checked against its zarr metadata by hand.
EXPECTED = {
    "example-timelapse_from_nd2.ome.zarr": [
        dict(id="example-timelapse_from_nd2.ome", shape=[53, 1, 1, 64, 64], dtype="uint16",
             chunks=[53, 1, 1, 64, 64], levels=[[53, 1, 1, 64, 64]], interval=0.50016,
             pixel_sizes={"z": None, "y": 0.325, "x": 0.325}),
    ],
    "fake-series-2.zarr": [
        dict(id="Image:0", name="series", shape=[1, 1, 1, 512, 512], dtype="uint8",
             levels=[[1, 1, 1, 512, 512], [1, 1, 1, 256, 256]], interval=None,
             pixel_sizes={"z": None, "y": None, "x": None}),
        dict(id="Image:1", name="series 2", shape=[1, 1, 1, 512, 512], dtype="uint8",
             levels=[[1, 1, 1, 512, 512], [1, 1, 1, 256, 256]], interval=None),
    ],
    "image-04.zarr": [
        dict(id="Image:0", shape=[1, 1, 2, 64, 64], dtype="float64", chunks=[1, 1, 1, 32, 32],
             levels=[[1, 1, 2, 64, 64], [1, 1, 2, 32, 32]],
             pixel_sizes={"z": 1.0, "y": 1.0, "x": 1.0}),
    ],
    "image-03.zarr": [
        dict(id="Image:0", shape=[1, 1, 2, 100, 100], dtype="float64", chunks=[1, 1, 1, 50, 100],
             levels=[[1, 1, 2, 100, 100]]),
    ],
}  # fmt: skip


@pytest.mark.parametrize("store", sorted(EXPECTED))
def test_info_json_figures(testdata: Path, store: str) -> None:
    path = testdata / "ome-zarr" / store
    result = tlcore("info", "--json", str(path))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["path"] == str(path) and info["reader"] == "ome-zarr"
    assert len(info["scenes"]) == len(EXPECTED[store])
    for scene, want in zip(info["scenes"], EXPECTED[store]):
        assert set(scene) >= {"id", "name", "shape", "dtype", "chunks", "levels", "timestamps",
                              "interval", "channel_names", "pixel_sizes"}  # fmt: skip
        for key, value in want.items():
            if isinstance(value, float):
                assert scene[key] == pytest.approx(value), key
            else:
                assert scene[key] == value, key
        assert scene["timestamps"] is None  # OME-NGFF stores a regular grid, no per-frame times
        assert len(scene["channel_names"]) == scene["shape"][1]


def test_info_human_readable(testdata: Path) -> None:
    result = tlcore("info", str(testdata / "ome-zarr" / "fake-series-2.zarr"))
    assert result.returncode == 0, result.stderr
    assert "reader: ome-zarr" in result.stdout and "scenes: 2" in result.stdout
    assert "[1] Image:1 (series 2)" in result.stdout
    assert "level 1: (1, 1, 1, 256, 256)  downsampling (1.0, 1.0, 1.0, 2.0, 2.0)" in result.stdout


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("nd2/example-timelapse.nd2", "pip install tlcore-nd2"),
        ("czi/CellDivision_T3_Z5_CH2_X240_Y170.czi", "pip install tlcore-czi"),
        ("ome-tiff/FLIM-modulo-sample.ome.tif", "pip install tlcore-tiff"),
        ("tiff/stuck.tif", "pip install tlcore-tiff"),
        ("lif/PR2729_frameOrderCombinedScanTypes.lif", "pip install tlcore-lif"),
    ],
)
def test_info_without_a_plugin_exits_with_the_registry_message(
    testdata: Path, relative: str, expected: str
) -> None:
    # As on a machine where only tlcore-ome-zarr is installed.
    disabled = {"TLCORE_DISABLE_READERS": "nd2,czi,tiff,ome-tiff,lif,bioio"}
    result = tlcore("info", str(testdata / relative), env=disabled)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(testdata / relative) in result.stderr
    assert expected in result.stderr and "installed readers:" in result.stderr


def test_info_on_missing_path(tmp_path: Path) -> None:
    result = tlcore("info", str(tmp_path / "missing.ome.zarr"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "No such file or directory" in result.stderr and "missing.ome.zarr" in result.stderr


def test_info_on_broken_store(tmp_path: Path) -> None:
    store = tmp_path / "broken.ome.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{ this is not json")
    result = tlcore("info", str(store))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "broken.ome.zarr" in result.stderr and "ome-zarr: unreadable zarr metadata" in result.stderr
    )


# -- new-plugin and --debug (the plugin author's kit) ---------------------------------------------
def test_new_plugin_writes_a_distribution(tmp_path: Path) -> None:
    result = tlcore("new-plugin", "my-format", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    root = tmp_path / "tlcore-my-format"
    assert str(root) in result.stdout and "pytest" in result.stdout
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert files == {
        "pyproject.toml", "README.md", "tests/test_conformance.py",
        "src/tlcore_my_format/__init__.py", "src/tlcore_my_format/py.typed",
        "src/tlcore_my_format/reader.py", "src/tlcore_my_format/stack.py",
    }  # fmt: skip
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."tlcore.readers"]' in pyproject
    assert 'my-format = "tlcore_my_format.reader"' in pyproject
    reader = (root / "src/tlcore_my_format/reader.py").read_text()
    assert '".myformat"' in reader and "{{" not in reader

    again = tlcore("new-plugin", "my-format", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = tlcore("new-plugin", "My Format!", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "lower-case letters" in bad.stderr


BOOM = """
import tlcore

def _explode():
    raise RuntimeError("native library exploded")

@tlcore.hookimpl
def reader_info():
    return tlcore.ReaderInfo("boom", (".boom",))

@tlcore.hookimpl
def open_lazy(source, scene, level):
    _explode()
"""


def test_debug_shows_the_plugin_traceback(tmp_path: Path) -> None:
    import os

    site = tmp_path / "site"
    info = site / "tlcore_boom-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "tlcore_boom.py").write_text(BOOM)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlcore-boom\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tlcore.readers]\nboom = tlcore_boom\n")
    sample = tmp_path / "x.boom"
    sample.write_bytes(b"boom")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("TLCORE_DEBUG", None)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tlcore.cli", *args], capture_output=True,
                              text=True, env={**env, **extra}, timeout=120)  # fmt: skip

    plain = run("info", str(sample))
    assert plain.returncode == 2 and "native library exploded" in plain.stderr
    assert "Traceback" not in plain.stderr and "--debug" in plain.stderr
    for result in (run("info", "--debug", str(sample)), run("--debug", "info", str(sample)),
                   run("info", str(sample), TLCORE_DEBUG="1")):  # fmt: skip
        assert result.returncode == 2
        assert "Traceback" in result.stderr and "_explode" in result.stderr, result.stderr
        assert "tlcore_boom.py" in result.stderr

    (site / "tlcore_broken.py").write_text("import libfoo_that_is_missing\n")
    (info / "entry_points.txt").write_text(
        "[tlcore.readers]\nboom = tlcore_boom\nbroken = tlcore_broken\n"
    )
    listed = run("plugins", "--debug")
    assert listed.returncode == 0
    assert "plugin 'broken'" in listed.stderr and "Traceback" in listed.stderr
    assert "libfoo_that_is_missing" in listed.stderr


def test_a_reader_that_leaves_the_pipe_gets_no_traceback() -> None:
    """`tlcore plugins --json | head -1`: the pipe closes early; no BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlcore.cli", "plugins", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before anything is written
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()


def test_info_stats_and_validate_image_column(
    synthetic_store: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tlcore.cli import main

    monkeypatch.setenv("TLCORE_STATS_DIR", str(tmp_path / "stats"))
    raw = synthetic_store("raw.ome.zarr", shape=(2, 1, 1, 32, 32))
    wide = synthetic_store("wide.ome.zarr", shape=(2, 1, 1, 32, 40))
    assert main(["info", str(raw), "--stats"]) == 0
    assert "p99.9" in capsys.readouterr().out
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(f"path,target_path\n{raw},{wide}\n")
    code = main(["validate", str(manifest), "--split-column", "", "--image-column",
                 "target=target_path", "--no-progress"])  # fmt: skip
    assert code == 1 and "target_path" in capsys.readouterr().out


def test_bench_formats_is_registered_with_its_size_choice() -> None:
    """``tlcore bench formats --help`` lists the sizes (the benchmark itself runs in
    tests/benchmarks/test_formats.py)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "bench", "formats", "--help"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--size" in done.stdout and "large" in done.stdout and "medium" in done.stdout
