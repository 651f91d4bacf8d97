"""What the kit does not know about the bridge: it stays below the native readers (and does not
even import bioio for their files), glob namings, install hints, time metadata, `tlcore info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tlcore
from tlcore.io.source import Source
from tlcore.readers.registry import get_registry

NATIVE = {
    "nd2/example-timelapse.nd2": "nd2",
    "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi": "czi",
    "ome-tiff/FOV7_HV110_P0500510000.ome.tiff": "ome-tiff",
    "ome-zarr/example-timelapse_from_nd2.ome.zarr": "ome-zarr",
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_native_readers_keep_their_files_and_bioio_is_not_imported(
    testdata: Path, tmp_path: Path
) -> None:
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.arange(2 * 8 * 6, dtype=np.uint16).reshape(2, 8, 6))
    paths = {str(testdata / p): r for p, r in NATIVE.items()} | {str(plain): "tiff"}
    assert "bioio" in {r.name for r in get_registry().loaded()}
    out = _python(
        "import json, sys, tlcore\n"
        f"paths = {list(paths)!r}\n"
        "readers = [tlcore.open_lazy(p).reader for p in paths]\n"
        "print(json.dumps([readers, sorted(m for m in sys.modules if m.startswith('bioio'))]))"
    )
    readers, bioio_modules = json.loads(out)
    assert readers == list(paths.values())
    assert bioio_modules == []  # the bridge was never asked


def _write_planes(directory: Path, names: dict[tuple[int, int, int], str]) -> np.ndarray:
    """One 2-D TIFF per (t, c, z) under the given names; returns the TCZYX pixels written."""
    import tifffile

    directory.mkdir()
    shape = tuple(max(k[i] for k in names) + 1 for i in range(3))
    pixels = np.random.default_rng(3).integers(0, 4000, (*shape, 9, 7), dtype=np.uint16)
    for (t, c, z), name in names.items():
        tifffile.imwrite(directory / name, pixels[t, c, z])
    return pixels


def test_micro_manager_names(tmp_path: Path) -> None:
    names = {
        (t, c, z): f"img_channel{c:03d}_position000_time{t:09d}_z{z:03d}.tif"
        for t in range(3)
        for c in range(2)
        for z in range(2)
    }
    pixels = _write_planes(tmp_path / "mm", names)
    image = tlcore.open_lazy(str(tmp_path / "mm" / "*.tif"))
    assert image.reader == "bioio" and image.metadata["via"] == "bioio-tiff-glob"
    assert image.metadata["files"] == 12
    assert image.shape == pixels.shape
    assert np.array_equal(image.data.compute(), pixels)
    assert np.array_equal(image.data[2, 1].compute(), pixels[2, 1])


def test_names_with_one_number_need_the_dims_option(tmp_path: Path) -> None:
    pixels = _write_planes(tmp_path / "f", {(t, 0, 0): f"frame_{t:04d}.tif" for t in range(4)})
    pattern = str(tmp_path / "f" / "frame_*.tif")
    with pytest.raises(tlcore.NoReaderError, match="bioio_glob_dims"):
        tlcore.open_lazy(pattern)
    image = tlcore.open_lazy(pattern, storage_options={"bioio_glob_dims": "T"})
    assert image.shape == (4, 1, 1, 9, 7)
    assert np.array_equal(image.data.compute(), pixels)


def test_a_pattern_that_matches_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No file matches"):
        tlcore.open_lazy(str(tmp_path / "*.tif"))


def test_unknown_extension_is_refused_without_importing_bioio(tmp_path: Path) -> None:
    odd = tmp_path / "notes.xyz"
    odd.write_bytes(b"not an image" * 10)
    out = _python(
        "import sys, tlcore\n"
        f"try:\n    tlcore.open_lazy({str(odd)!r})\n"
        "except tlcore.NoReaderError as exc:\n    print(exc)\n"
        "print('bioio imported:', 'bioio' in sys.modules)"
    )
    assert "bioio: no installed bioio reader declares 'notes.xyz'" in out
    assert "bioio imported: False" in out


def test_install_hint_names_the_bioio_plugin(tmp_path: Path) -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("bioio-sldy")
        pytest.skip("bioio-sldy is installed here")
    except PackageNotFoundError:
        pass
    slide = tmp_path / "capture.sldy"
    slide.write_bytes(b"\x00" * 64)
    with pytest.raises(tlcore.NoReaderError) as info:
        tlcore.open_lazy(slide)
    assert "pip install bioio-sldy" in str(info.value)
    # Without the bridge, the hint names it too.
    from tlcore.readers.bioio_formats import install_hints

    assert install_hints("a.sldy", bridge_installed=False) == [
        "  pip install tlcore-bioio bioio-sldy   # reads .sldy through bioio"
    ]


def test_time_interval_only_where_bioio_has_a_real_one(testdata: Path) -> None:
    from bioio import BioImage

    czi = testdata / "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi"
    axis = tlcore.time_axis(czi, reader="bioio")
    interval = BioImage(czi).time_interval
    assert interval is not None and axis.interval == pytest.approx(interval.total_seconds())
    # bioio-ome-zarr hands back a bare number whose unit it ignores: no interval, not a guess.
    store = testdata / "ome-zarr/example-timelapse_from_nd2.ome.zarr"
    assert not hasattr(BioImage(store).time_interval, "total_seconds")
    assert tlcore.time_axis(store, reader="bioio").interval is None


def test_tlcore_info_names_the_bioio_reader(tmp_path: Path) -> None:
    import tifffile

    series = tmp_path / "series"
    series.mkdir()
    for t in range(2):
        tifffile.imwrite(series / f"S0_T{t}_C0_Z0.tif", np.full((5, 4), t, np.uint8))
    result = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "info", str(series / "*.tif")],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "reader: bioio (bioio-tiff-glob)" in result.stdout
    assert "files: 2 matched the pattern" in result.stdout
    assert "shape TCZYX (2, 1, 1, 5, 4)" in result.stdout


def test_source_glob_matches(tmp_path: Path) -> None:
    (tmp_path / "a1.tif").write_bytes(b"")
    (tmp_path / "odd[1].tif").write_bytes(b"")
    assert Source.from_any(tmp_path / "a*.tif").glob_matches() == [str(tmp_path / "a1.tif")]
    # An existing path whose name holds a glob character is a path, not a pattern.
    assert Source.from_any(tmp_path / "odd[1].tif").glob_matches() is None
    assert Source.from_any("s3://bucket/*.tif").glob_matches() is None
