"""What the conformance kit does not know about CZI: timestamps, truncated files, mosaics and
the tiles option, pyramids, RGB order, options and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tlcore
from tlcore import Source

CELL = "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi"
MOSAIC = "czi/mosaic_test.czi"
TLCORE = str(Path(sys.executable).with_name("tlcore"))


def _aics_start_times(path: Path, n_t: int) -> list[float]:
    """Start of each timepoint from aicspylibczi's own subblock-metadata reader: the earliest
    AcquisitionTime among the subblocks of the timepoint, in seconds from the first."""
    import re

    from aicspylibczi import CziFile

    czi = CziFile(str(path))
    starts = []
    for t in range(n_t):
        stamps = []
        for _, xml in czi.read_subblock_metadata(T=t):
            text = re.search(r"<AcquisitionTime>([^<]+)<", xml)
            assert text is not None
            iso = text.group(1).rstrip("Z")
            base, frac = iso.split(".")
            stamps.append(datetime.fromisoformat(base).timestamp() + float("0." + frac))
        starts.append(min(stamps))
    return [s - starts[0] for s in starts]


# -- time ------------------------------------------------------------------------------------


def test_subblock_acquisition_times(testdata: Path) -> None:
    path = testdata / CELL
    axis = tlcore.time_axis(path)
    assert axis.size == 3 and axis.timestamps is not None
    steps = np.diff(axis.timestamps)
    assert np.all((steps > 59.0) & (steps < 61.0)), axis.timestamps
    assert axis.timestamps == pytest.approx(_aics_start_times(path, 3), abs=1e-5)
    assert axis.interval == pytest.approx(60.0)  # the experiment's planned interval


def test_no_recorded_time_gives_none(testdata: Path) -> None:
    for name in ("czi/tiles_time_z.czi", "czi/RGB-8bit.czi"):
        axis = tlcore.time_axis(testdata / name)
        assert axis.timestamps is None and axis.interval is None, (name, axis)
    generated = tlcore.time_axis(testdata / "czi/tiles_time_z.czi")
    assert generated.size == 2


def test_generated_file_has_no_made_up_time(tmp_path: Path, czi_writer: Any) -> None:
    data = np.zeros((3, 1, 1, 16, 24), dtype=np.uint16)
    axis = tlcore.time_axis(czi_writer(tmp_path / "t.czi", [data]))
    assert axis.size == 3 and axis.timestamps is None and axis.interval is None


# -- truncated and bad files -----------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.97])
def test_truncated_shared_file_is_a_clear_error(
    testdata: Path, tmp_path: Path, fraction: float
) -> None:
    data = (testdata / CELL).read_bytes()
    path = tmp_path / "cut.czi"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(tlcore.TlcoreError) as info:
        tlcore.open_lazy(path)
    message = str(info.value)
    assert str(path) in message and "truncated" in message


def test_truncated_generated_file_is_a_clear_error(tmp_path: Path, czi_writer: Any) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, (2, 2, 3, 64, 80), dtype=np.uint16)
    whole = czi_writer(tmp_path / "whole.czi", [data])
    raw = whole.read_bytes()
    for cut in (len(raw) // 3, len(raw) - 100):
        path = tmp_path / f"cut-{cut}.czi"
        path.write_bytes(raw[:cut])
        with pytest.raises(tlcore.TlcoreError, match="truncated") as info:
            tlcore.list_scenes(path)
        assert str(path) in str(info.value)


def test_cli_info_on_truncated_file_exits_non_zero(testdata: Path, tmp_path: Path) -> None:
    data = (testdata / CELL).read_bytes()
    path = tmp_path / "cut.czi"
    path.write_bytes(data[: len(data) // 2])
    result = subprocess.run(
        [TLCORE, "info", str(path), "--json"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert str(path) in out and "truncated" in out


def test_not_a_czi_is_refused_with_a_reason(tmp_path: Path) -> None:
    from tlcore_czi import image

    path = tmp_path / "x.czi"
    path.write_bytes(b"\x00" * 100)
    assert "not a CZI" in str(image.can_open(Source.from_any(path)))
    remote = image.can_open(Source.from_any("s3://bucket/x.czi"))
    assert isinstance(remote, str) and "local" in remote


# -- mosaics, tiles, pyramids, RGB -----------------------------------------------------------


def test_mosaic_is_stitched_and_chunked_by_tile(testdata: Path) -> None:
    image = tlcore.open_lazy(testdata / MOSAIC)
    assert image.shape == (1, 1, 1, 624, 1756)
    assert image.data.chunksize == (1, 1, 1, 624, 924)  # the tile size
    (level,) = tlcore.levels(testdata / MOSAIC)
    assert level.chunks == image.data.chunksize


def test_tiles_option_gives_raw_tiles(testdata: Path) -> None:
    from aicspylibczi import CziFile

    options = {"czi_tiles": True}
    scenes = tlcore.list_scenes(testdata / MOSAIC, storage_options=options)
    assert scenes == ["TR1:M0", "TR1:M1"]
    czi = CziFile(str(testdata / MOSAIC))
    for m, scene in enumerate(scenes):
        image = tlcore.open_lazy(testdata / MOSAIC, scene=scene, storage_options=options)
        assert image.shape == (1, 1, 1, 624, 924)
        want, _ = czi.read_image(S=0, M=m)
        got = image.data.compute()
        assert np.array_equal(got.reshape(624, 924), want.reshape(624, 924))
    # the second tile starts at x=832 in the stitched scene, where it overlaps the first
    stitched = tlcore.open_lazy(testdata / MOSAIC).data[0, 0, 0, :, 924:1756].compute()
    tile1 = tlcore.open_lazy(testdata / MOSAIC, scene=1, storage_options=options)
    assert np.array_equal(stitched, tile1.data[0, 0, 0, :, 92:].compute())


def test_unknown_option_is_a_clear_error(testdata: Path) -> None:
    with pytest.raises(tlcore.TlcoreError, match="czi_tiles"):
        tlcore.list_scenes(testdata / MOSAIC, storage_options={"czi_tile": True})


def test_pyramid_level(testdata: Path) -> None:
    from pylibCZIrw import czi as pyczi

    path = testdata / "czi/WellD6-7_S2.czi"
    _, half = tlcore.levels(path, scene="D7-D7")
    assert half.shape == (1, 1, 1, 220, 272) and half.downsampling[3:] == (2.0, 2.0)
    image = tlcore.open_lazy(path, scene="D7-D7", level=1)
    assert image.pixel_sizes == pytest.approx((None, 0.2, 0.2))  # type: ignore[arg-type]
    full = image.data.compute()
    with pyczi.open_czi(str(path)) as doc:
        rect = doc.scenes_bounding_rectangle_no_pyramid[1]
        want = doc.read(roi=rect, scene=1, zoom=0.5)[..., 0]
    assert np.array_equal(full[0, 0, 0], want)
    crop = image.data[0, 0, 0, 33:151, 41:230].compute()
    assert np.array_equal(crop, full[0, 0, 0, 33:151, 41:230])


def test_rgb_samples_become_r_g_b_channels(testdata: Path) -> None:
    from pylibCZIrw import czi as pyczi

    path = testdata / "czi/RGB-8bit.czi"
    image = tlcore.open_lazy(path)
    assert image.channel_names == ("R", "G", "B") and image.metadata["rgb_order"] == "RGB"
    with pyczi.open_czi(str(path)) as doc:
        bgr = doc.read()
    got = image.data[0, :, 0].compute()
    for c, k in enumerate((2, 1, 0)):  # libCZI's memory order is B, G, R
        assert np.array_equal(got[c], bgr[..., k])
    assert not np.array_equal(got[0], got[2])


def test_generated_scenes_and_channel_crops(tmp_path: Path, czi_writer: Any) -> None:
    rng = np.random.default_rng(5)
    scenes = [rng.integers(0, 255, (2, 3, 2, 70, 90), dtype=np.uint8) for _ in range(3)]
    path = czi_writer(tmp_path / "three.czi", scenes, tiles=(2, 2))
    assert tlcore.list_scenes(path) == ["Image:0", "Image:1", "Image:2"]
    image = tlcore.open_lazy(path, scene="Image:2")
    # 35 x 45 tiles: chunks are never below 256 pixels a side, so one chunk per plane here
    assert image.data.chunksize == (1, 1, 1, 70, 90)
    crop = image.data[1, 1:3, 1, 20:60, 30:80].compute()
    assert np.array_equal(crop, scenes[2][1, 1:3, 1, 20:60, 30:80])


# -- command line ----------------------------------------------------------------------------


def test_cli_info_json(testdata: Path) -> None:
    result = subprocess.run(
        [TLCORE, "info", str(testdata / CELL), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["reader"] == "czi"
    (scene,) = info["scenes"]
    assert scene["id"] == "Image:0" and scene["shape"] == [3, 2, 5, 170, 240]
    assert len(scene["timestamps"]) == 3 and scene["interval"] == pytest.approx(60.0)
    assert scene["channel_names"] == ["LED555", "LED470"]


# -- crops of uncompressed subblocks are read from the file, not decoded whole -------------------
@pytest.mark.parametrize("tiles", [(1, 1), (2, 3)])
def test_crop_of_uncompressed_planes_reads_about_its_bytes(
    tmp_path: Path, tiles: tuple[int, int]
) -> None:
    """A 48 x 40 crop of 4 planes of 1024 x 768: libCZI would decode the 4 whole planes (6 MB);
    the direct read takes the crop's rows and columns (read_stats sees the crop either way, so
    the file reads are counted with iowatch). The pixels agree with libCZI's own ROI read."""
    from pylibCZIrw import czi as pyczi

    from tlcore.lazy.compute import compute
    from tlcore.testing import iowatch
    from tlcore_czi.testing import write_czi

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 65535, (2, 1, 4, 1024, 768), dtype="uint16")
    path = write_czi(tmp_path / "raw.czi", [pixels], tiles=tiles)
    image = tlcore.open_lazy(path)
    box = (1, slice(0, 1), slice(0, 4), slice(300, 348), slice(50, 90))
    # Warm up both paths: the handle opens, dask imports what it computes with (rchar counts
    # every read of the process, module files included).
    compute(image.data[0, 0, 0, 0:1, 0:1], "synchronous")
    image.data[0, 0, 0, 0:1, 0:1].compute(scheduler="synchronous")
    with iowatch.watch(path) as seen:
        got = compute(image.data[box], "synchronous")
    assert np.array_equal(got, pixels[box])
    crop_bytes = got.nbytes
    assert seen.bytes_read is not None
    assert seen.bytes_read <= 8 * crop_bytes, (seen.bytes_read, crop_bytes)
    # A plain dask compute of the same crop: bands of rows, not whole planes (a mosaic stays
    # chunked by tile, composed by libCZI where tiles meet).
    with iowatch.watch(path) as plain:
        assert np.array_equal(image.data[box].compute(scheduler="synchronous"), pixels[box])
    assert plain.bytes_read is not None
    if tiles == (1, 1):
        assert plain.bytes_read <= 0.5 * pixels[0, 0, 0].nbytes, plain.bytes_read
    with pyczi.open_czi(str(path)) as czi:
        native = czi.read(roi=(50, 300, 40, 48), plane={"T": 1, "C": 0, "Z": 2})
    assert np.array_equal(got[0, 2], native[..., 0])


def test_crop_across_mosaic_tiles_goes_through_libczi(tmp_path: Path) -> None:
    """A crop over the seam of two tiles is composed by libCZI: still exact."""
    from tlcore_czi.testing import write_czi

    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 65535, (1, 1, 2, 128, 160), dtype="uint16")
    path = write_czi(tmp_path / "mosaic.czi", [pixels], tiles=(2, 2))
    image = tlcore.open_lazy(path)
    box = (0, 0, slice(0, 2), slice(50, 80), slice(70, 90))
    assert np.array_equal(image.data[box].compute(), pixels[box])


def test_compressed_planes_decode_once_through_the_chunk_cache(tmp_path: Path) -> None:
    """zstd subblocks are decoded whole by libCZI (the floor). A dask chunk of such a file is
    one subblock, so ``LoadLazyd(chunk_cache=...)`` keeps decoded subblocks: a second crop of
    the same planes decodes nothing."""
    from pylibCZIrw import czi as pyczi

    from tlcore import ComputeDaskd, LoadLazyd
    from tlcore.lazy import chunkcache

    rng = np.random.default_rng(8)
    pixels = rng.integers(0, 4000, (1, 1, 3, 256, 320), dtype="uint16")
    path = tmp_path / "zstd.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as writer:
        for z in range(3):
            writer.write(pixels[0, 0, z], plane={"T": 0, "C": 0, "Z": z},
                         compression_options="zstd1:ExplicitLevel=1")  # fmt: skip
    image = tlcore.open_lazy(path)
    assert image.data.chunksize == (1, 1, 1, 256, 320)  # one subblock per chunk
    load = LoadLazyd(keys="raw", chunk_cache=64 * 2**20)
    compute = ComputeDaskd(keys="raw", scheduler="synchronous")
    chunkcache.cache.clear()
    chunkcache.stats.reset()
    for y in (10, 100):
        sample = load({"original_path": str(path), "T": 0})
        sample["raw"] = sample["raw"][:, :, y : y + 32, 40:80]
        got = compute(sample)["raw"].numpy()
        assert np.array_equal(got, pixels[0, :, :, y : y + 32, 40:80])
    counts = chunkcache.stats.snapshot()
    assert counts["chunks_decoded"] == 3, counts
    assert counts["cache_hits"] >= 3, counts
