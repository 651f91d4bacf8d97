"""What the conformance kit does not know: timestamps, tiles, bad and truncated files, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tlcore
from tlcore.lazy import read_stats

MOSAIC = "lif/PR2729_frameOrderCombinedScanTypes.lif"
XZ = "lif/testdata_2channel_xz.lif"
LAMBDA = "lif/LeicaLASX_wavelength-sweep_example.lif"
TILES = {"lif_mosaic": "tiles"}
TLCORE = str(Path(sys.executable).with_name("tlcore"))


def liffile_image(path: Path, index: int) -> tuple[np.ndarray, tuple[str, ...], object]:
    import liffile

    with liffile.LifFile(path, squeeze=False) as lif:
        image = lif.images[index]
        return image.asarray(), image.dims, image.timestamps


# -- time ------------------------------------------------------------------------------------
def test_tilescan_timestamps_are_the_first_frame_of_each_timepoint(testdata: Path) -> None:
    _, dims, stamps = liffile_image(testdata / MOSAIC, 0)
    assert dims == ("T", "M", "Z", "C", "Y", "X")
    ms = np.asarray(stamps).astype("datetime64[ms]").astype(np.int64).reshape(2, -1)
    want = (ms.min(axis=1) - ms.min()) / 1000.0  # liffile keeps milliseconds only
    axis = tlcore.time_axis(testdata / MOSAIC)
    assert axis.size == 2 and axis.timestamps is not None
    assert axis.timestamps == pytest.approx(tuple(want), abs=1e-3)
    assert axis.timestamps[1] > 8.0  # the second timepoint starts ~8.28 s after the first
    assert axis.interval == pytest.approx(8.271 / 1)  # T Length 8.271 s over 2 - 1 steps


def test_line_scan_timestamps_one_per_timepoint(testdata: Path) -> None:
    _, dims, stamps = liffile_image(testdata / XZ, 0)
    assert dims == ("T", "C", "Z", "X")  # one stamp per (T, C) frame of Z x X
    ms = np.asarray(stamps).astype("datetime64[ms]").astype(np.int64).reshape(20, 2)
    want = (ms.min(axis=1) - ms.min()) / 1000.0
    axis = tlcore.time_axis(testdata / XZ, scene="xzt")
    assert axis.timestamps is not None and len(axis.timestamps) == 20
    assert axis.timestamps == pytest.approx(tuple(want), abs=1e-3)
    assert axis.interval == pytest.approx(10.07 / 19)


def test_no_time_axis_gives_none(testdata: Path) -> None:
    axis = tlcore.time_axis(testdata / XZ, scene="xz")
    assert axis == tlcore.TimeAxis(size=1, timestamps=None, interval=None)


# -- pixels, sizes, chunks -------------------------------------------------------------------
def test_negative_z_length_gives_a_positive_size_and_says_so(testdata: Path) -> None:
    image = tlcore.open_lazy(testdata / MOSAIC)
    assert image.pixel_sizes.z == pytest.approx(6.227615)
    assert image.metadata["z_descending"] is True
    assert tlcore.open_lazy(testdata / XZ).metadata["z_descending"] is False


def test_line_scans_match_readlif(testdata: Path) -> None:
    """A second, independent implementation of the LIF layout agrees on the XZ scans."""
    readlif = pytest.importorskip("readlif.reader")
    lif = readlif.LifFile(str(testdata / XZ))
    for index, extra_dim in [(0, 4), (1, 2)]:  # xzt: planes over T (4); xzy: over Y (2)
        ref = lif.get_image(index)
        image = tlcore.open_lazy(testdata / XZ, scene=index)
        data = image.data.compute()
        n = ref.dims_n[extra_dim]
        for i in (0, n // 2, n - 1):
            for c in range(2):
                plane = np.asarray(ref.get_plane(c=c, requested_dims={extra_dim: i}))  # Z x X
                got = data[i, c, :, 0, :] if extra_dim == 4 else data[0, c, :, i, :]
                assert np.array_equal(got, plane), (index, i, c)


def test_crop_of_one_timepoint_reads_only_its_planes(testdata: Path) -> None:
    image = tlcore.open_lazy(testdata / MOSAIC)
    assert image.data.chunks[0] == (1, 1) and image.data.chunksize[2] == 1
    read_stats.reset()
    crop = image.data[1, 0, 2, 10:50, 60:120].compute(scheduler="synchronous")
    regions, nbytes = read_stats.snapshot()
    assert crop.shape == (40, 60)
    # one region of one plane of one channel: the crop (a plain dask compute of a slice is one
    # region read, tlcore.lazy.daskarray), not the stack nor the whole 127 x 127 plane
    assert (regions, nbytes) == (1, 40 * 60)


def test_chunks_are_stored_frames_and_match_levels(testdata: Path) -> None:
    """A chunk is one stored 2-D frame of one timepoint and channel: YX for images, ZX for
    XZ line scans (whose (T, C, Z) planes are single rows)."""
    cases = [(MOSAIC, "TileScan_001", (1, 1, 1, 127, 127)), (XZ, "xzt", (1, 1, 128, 1, 128)),
             (XZ, "xzy", (1, 1, 128, 1, 128)), (XZ, "xz", (1, 1, 512, 1, 512))]  # fmt: skip
    for path, scene, chunks in cases:
        level = tlcore.levels(testdata / path, scene=scene)[0]
        image = tlcore.open_lazy(testdata / path, scene=scene)
        assert level.chunks == image.data.chunksize == chunks


# -- tile scans ------------------------------------------------------------------------------
def test_tiles_option_gives_one_scene_per_tile(testdata: Path) -> None:
    path = testdata / MOSAIC
    scenes = tlcore.list_scenes(path, storage_options=TILES)
    assert scenes == [f"TileScan_001:tile{m}" for m in range(4)]
    data, _, _ = liffile_image(path, 0)  # T M Z C Y X
    for m, scene in enumerate(scenes):
        image = tlcore.open_lazy(path, scene=scene, storage_options=TILES)
        assert image.shape == (2, 2, 3, 64, 64)
        assert image.metadata["mosaic"] == "tile" and image.metadata["tile"] == m
        assert np.array_equal(image.data.compute(), data[:, m].transpose(0, 2, 1, 3, 4))
    positions = tlcore.open_lazy(path).metadata["tile_stage_positions_um"]
    assert positions[3] == pytest.approx([286.40625, 186.40625])


def test_stitched_plane_is_made_of_the_tiles(testdata: Path) -> None:
    """bioio-lif's grid: field (0, 0) bottom right, FieldX/FieldY swapped, 1-pixel overlap."""
    path = testdata / MOSAIC
    stitched = tlcore.open_lazy(path).data.compute()
    data, _, _ = liffile_image(path, 0)  # T M Z C Y X; tiles (FieldX, FieldY): 00 01 10 11
    tile = data.transpose(1, 0, 3, 2, 4, 5)  # M T C Z Y X
    assert np.array_equal(stitched[..., :64, :64], tile[3])  # field (1, 1): top left, whole
    assert np.array_equal(stitched[..., :64, 64:], tile[2][..., :, 1:])  # (1, 0): top right
    assert np.array_equal(stitched[..., 64:, :64], tile[1][..., 1:, :])  # (0, 1): bottom left
    assert np.array_equal(stitched[..., 64:, 64:], tile[0][..., 1:, 1:])  # (0, 0): bottom right


def test_unknown_lif_option_is_a_clear_error(testdata: Path) -> None:
    with pytest.raises(tlcore.ReaderError, match="lif_mosaic"):
        tlcore.list_scenes(testdata / MOSAIC, storage_options={"lif_mosaic": "grid"})
    with pytest.raises(tlcore.ReaderError, match="unknown lif option"):
        tlcore.list_scenes(testdata / MOSAIC, storage_options={"lif_tiles": True})


# -- bad files -------------------------------------------------------------------------------
@pytest.mark.parametrize("scene", ["x_y_lambdaEmi", "x_y_lambdaExc", "x_y_z_t_lambdaEmi"])
def test_lambda_scans_are_a_clear_error_before_training(testdata: Path, scene: str) -> None:
    path = testdata / LAMBDA
    assert tlcore.list_scenes(path) == ["x_y_lambdaEmi", "x_y_lambdaExc", "x_y_z_t_lambdaEmi"]
    for call in (tlcore.levels, tlcore.time_axis, tlcore.open_lazy):
        with pytest.raises(tlcore.ReaderError) as info:
            call(path, scene=scene)
        message = str(info.value)
        assert str(path) in message and repr(scene) in message and "lambda" in message


def test_cli_info_on_a_lambda_file_exits_non_zero(testdata: Path) -> None:
    result = subprocess.run(
        [TLCORE, "info", str(testdata / LAMBDA), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "x_y_lambdaEmi" in result.stderr and "lambda" in result.stderr
    assert "Traceback" not in result.stderr


def truncated(testdata: Path, tmp_path: Path, size: int) -> Path:
    data = (testdata / MOSAIC).read_bytes()
    path = tmp_path / "truncated.lif"
    path.write_bytes(data[:size])
    return path


def test_truncated_pixel_data_is_a_clear_error(testdata: Path, tmp_path: Path) -> None:
    path = truncated(testdata, tmp_path, -1000)  # the last 1000 pixel bytes are gone
    for call in (tlcore.levels, tlcore.open_lazy):
        with pytest.raises(tlcore.ReaderError, match="truncated") as info:
            call(path)
        assert str(path) in str(info.value) and "TileScan_001" in str(info.value)


@pytest.mark.parametrize("size", [5, 2000, 30000, 30810])  # header, XML, block header
def test_truncated_metadata_is_a_clear_error(testdata: Path, tmp_path: Path, size: int) -> None:
    path = truncated(testdata, tmp_path, size)
    with pytest.raises(tlcore.TlcoreError) as info:
        tlcore.open_lazy(path)
    assert str(path) in str(info.value)
    assert "LIF" in str(info.value) or "truncated" in str(info.value)


def test_cli_on_a_truncated_file_exits_non_zero(testdata: Path, tmp_path: Path) -> None:
    path = truncated(testdata, tmp_path, -1000)
    result = subprocess.run([TLCORE, "info", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "truncated" in result.stderr
    assert "Traceback" not in result.stderr


def test_remote_sources_are_refused_with_a_reason() -> None:
    from tlcore import Source
    from tlcore_lif import image

    verdict = image.can_open(Source.from_any("s3://bucket/a.lif"))
    assert isinstance(verdict, str) and "local" in verdict


# -- CLI and import cost ---------------------------------------------------------------------
def test_cli_info_json(testdata: Path) -> None:
    result = subprocess.run(
        [TLCORE, "info", str(testdata / XZ), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["reader"] == "lif"
    assert [s["id"] for s in info["scenes"]] == ["xzt", "xzy", "xz"]
    xzt = info["scenes"][0]
    assert xzt["shape"] == [20, 2, 128, 1, 128] and len(xzt["timestamps"]) == 20
    assert xzt["channel_names"] == ["Green", "Red"]

    result = subprocess.run(
        [TLCORE, "info", str(testdata / MOSAIC), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    scene = json.loads(result.stdout)["scenes"][0]
    assert scene["shape"] == [2, 2, 3, 127, 127]
    assert scene["pixel_sizes"]["z"] == pytest.approx(6.227615)


def test_hook_module_imports_no_native_library() -> None:
    code = (
        "import sys, tlcore_lif.reader; "
        "bad = [m for m in ('liffile', 'dask', 'tlcore_lif.image') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
