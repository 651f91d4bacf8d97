"""What the conformance kit does not know: timestamps, the axis rule and ``tiff_dims``, reader
choice between ``ome-tiff`` and ``tiff``, chunking, bad and truncated files, the CLI, S3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import tlcore
from tlcore.io.source import Source
from tlcore.readers.registry import get_registry

Writers = dict[str, Callable[[Path], Any]]
TLCORE = Path(sys.executable).with_name("tlcore")

OME_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
)


def _write_ome_xml(path: Path, data: np.ndarray, pixels_attrs: str, planes: str) -> Path:
    """A single-image OME-TIFF (TZYX pages) whose OME-XML is written by hand."""
    t, z, y, x = data.shape
    xml = (
        f'{OME_HEAD}<Image ID="Image:0" Name="hand"><Pixels ID="Pixels:0" '
        f'DimensionOrder="XYZCT" Type="{data.dtype}" SizeX="{x}" SizeY="{y}" SizeZ="{z}" '
        f'SizeC="1" SizeT="{t}" {pixels_attrs}><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        f'<TiffData IFD="0" PlaneCount="{t * z}"/>{planes}</Pixels></Image></OME>'
    )
    tifffile.imwrite(
        path, data.reshape(t * z, y, x), description=xml, metadata=None, photometric="minisblack"
    )
    return path


# -- time ------------------------------------------------------------------------------------
def test_ome_delta_t_gives_seconds_per_timepoint(tmp_path: Path, writers: Writers) -> None:
    sample = writers["ome-timelapse"](tmp_path)
    axis = tlcore.time_axis(sample.path)
    # DeltaT in ms on every plane; the first plane of each T is 6 planes (6 s) apart.
    assert axis.timestamps == sample.extra["timestamps"]
    assert axis.interval == 2.5
    assert tlcore.open_lazy(sample.path).time_axis == axis


def test_first_plane_of_each_timepoint_in_any_order_and_unit(tmp_path: Path) -> None:
    data = np.arange(3 * 2 * 4 * 5, dtype=np.uint16).reshape(3, 2, 4, 5)
    # Planes listed backwards, in minutes; Z=1 of each T comes first in the XML.
    planes = "".join(
        f'<Plane TheT="{t}" TheZ="{z}" TheC="0" DeltaT="{t * 0.5 + z * 0.01}" DeltaTUnit="min"/>'
        for t in reversed(range(3))
        for z in reversed(range(2))
    )
    path = _write_ome_xml(tmp_path / "hand.ome.tif", data, "", planes)
    axis = tlcore.time_axis(path)
    assert axis.timestamps == pytest.approx((0.0, 30.0, 60.0))
    assert axis.interval is None
    image = tlcore.open_lazy(path)
    assert image.shape == (3, 1, 2, 4, 5)
    assert np.array_equal(image.data.compute()[:, 0], data)


def test_a_timepoint_without_delta_t_means_no_timestamps(tmp_path: Path) -> None:
    data = np.zeros((3, 1, 4, 5), np.uint8)
    planes = "".join(f'<Plane TheT="{t}" TheZ="0" TheC="0" DeltaT="{t}"/>' for t in range(2))
    attrs = 'TimeIncrement="250" TimeIncrementUnit="ms" PhysicalSizeZ="-6.23"'
    path = _write_ome_xml(tmp_path / "partial.ome.tif", data, attrs, planes)
    axis = tlcore.time_axis(path)
    assert axis.timestamps is None and axis.interval == pytest.approx(0.25)


def test_imagej_frame_interval_with_its_unit(tmp_path: Path) -> None:
    path = tmp_path / "minutes.tif"
    tifffile.imwrite(
        path,
        np.zeros((3, 8, 8), np.uint8),
        imagej=True,
        metadata={"axes": "TYX", "finterval": 2, "tunit": "min"},
    )
    axis = tlcore.time_axis(path)
    assert axis.size == 3 and axis.interval == 120.0 and axis.timestamps is None


def test_no_time_metadata_is_none_not_a_default(testdata: Path) -> None:
    axis = tlcore.time_axis(testdata / "tiff/stuck.tif")
    assert axis.size == 5 and axis.timestamps is None and axis.interval is None


def test_negative_physical_size_is_reported_positive(tmp_path: Path) -> None:
    data = np.zeros((1, 2, 4, 5), np.uint8)
    path = _write_ome_xml(tmp_path / "neg.ome.tif", data, 'PhysicalSizeZ="-6.23"', "")
    assert tlcore.open_lazy(path).pixel_sizes.z == pytest.approx(6.23)


# -- axes and the tiff_dims option -----------------------------------------------------------
def test_unlabelled_pages_are_time_unless_tiff_dims_says_otherwise(testdata: Path) -> None:
    path = testdata / "tiff/stuck.tif"
    as_time = tlcore.open_lazy(path)
    as_z = tlcore.open_lazy(path, storage_options={"tiff_dims": "ZYX"})
    assert as_time.shape == (5, 1, 1, 512, 512)
    assert as_z.shape == (1, 1, 5, 512, 512) and as_z.reader == "tiff"
    assert as_z.data.chunksize == (1, 1, 1, 512, 512)
    assert np.array_equal(as_z.data[0, 0, 3].compute(), as_time.data[3, 0, 0].compute())
    assert np.array_equal(as_z.data[0, 0, 3].compute(), tifffile.imread(path, key=3))


def test_two_unlabelled_axes_need_tiff_dims(tmp_path: Path) -> None:
    path = tmp_path / "ambiguous.tif"
    data = np.arange(3 * 5 * 6 * 7, dtype=np.uint16).reshape(3, 5, 6, 7)
    tifffile.imwrite(path, data, photometric="minisblack")
    with pytest.raises(tlcore.ReaderError, match=r"unlabelled.*tiff_dims") as info:
        tlcore.open_lazy(path)
    assert str(path) in str(info.value) and "Image:0" in str(info.value)
    image = tlcore.open_lazy(path, storage_options={"tiff_dims": "TZYX"})
    assert image.shape == (3, 1, 5, 6, 7)
    assert np.array_equal(image.data.compute()[:, 0], data)
    swapped = tlcore.open_lazy(path, storage_options={"tiff_dims": "zcyx"})
    assert swapped.shape == (1, 5, 3, 6, 7)
    assert np.array_equal(swapped.data.compute()[0], data.transpose(1, 0, 2, 3))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tiff_dims": "TZYX"}, r"does not fit.*\(5, 512, 512\)"),
        ({"tiff_dims": "TQX"}, "letters from T, C, Z, Y, X"),
        ({"tiff_dims": "TTX"}, "each axis of the TIFF series once"),
        ({"tiff_axes": "TYX"}, r"unknown storage option.*tiff_axes"),
    ],
)
def test_bad_tiff_dims_is_a_clear_error(
    testdata: Path, options: dict[str, str], message: str
) -> None:
    path = testdata / "tiff/stuck.tif"
    with pytest.raises(tlcore.TlcoreError, match=message) as info:
        tlcore.open_lazy(path, storage_options=options)
    assert str(path) in str(info.value)


def test_tiff_dims_makes_ome_tiff_step_aside(tmp_path: Path, writers: Writers) -> None:
    sample = writers["ome-timelapse"](tmp_path)
    image = tlcore.open_lazy(sample.path, storage_options={"tiff_dims": "ZYX"})
    # Read as the plain page stack: 24 pages of the first series, as Z.
    assert image.reader == "tiff" and image.shape == (1, 1, 24, 64, 48)
    assert image.time_axis.timestamps is None


def test_rgb_samples_become_channels(tmp_path: Path) -> None:
    path = tmp_path / "rgb-movie.tif"
    data = np.arange(2 * 6 * 7 * 3, dtype=np.uint8).reshape(2, 6, 7, 3)
    tifffile.imwrite(path, data, photometric="rgb", metadata={"axes": "TYXS"})
    image = tlcore.open_lazy(path)
    assert image.shape == (2, 3, 1, 6, 7) and image.channel_names == ("R", "G", "B")
    assert image.data.chunksize[1] == 3  # one page holds all samples
    assert np.array_equal(image.data[:, 1:3, 0].compute(), data[..., 1:3].transpose(0, 3, 1, 2))


# -- which reader ------------------------------------------------------------------------------
def test_plain_tiff_named_ome_tif_falls_back_to_tiff(tmp_path: Path) -> None:
    path = tmp_path / "not-really.ome.tif"
    data = np.zeros((2, 8, 8), np.uint8)
    tifffile.imwrite(path, data, ome=False, metadata=None, photometric="minisblack")
    verdict = get_registry().call("ome-tiff", "can_open", Source.from_any(path))
    assert isinstance(verdict, str) and "OME" in verdict
    assert tlcore.open_lazy(path).reader == "tiff"


def test_ome_tiff_saved_as_tif_keeps_its_ome_metadata(tmp_path: Path, writers: Writers) -> None:
    sample = writers["ome-timelapse"](tmp_path)
    renamed = tmp_path / "exported.tif"
    shutil.copy(sample.path, renamed)
    assert tlcore.list_scenes(renamed) == ["Image:0", "Image:1"]
    image = tlcore.open_lazy(renamed)
    assert image.reader == "tiff" and image.shape == sample.shape
    assert image.time_axis.timestamps == sample.extra["timestamps"]
    assert image.channel_names == ("GFP", "RFP")


# -- chunks ------------------------------------------------------------------------------------
def test_tiles_are_chunks_and_levels_have_their_own(tmp_path: Path, writers: Writers) -> None:
    sample = writers["ome-pyramid"](tmp_path)
    levels = tlcore.levels(sample.path)
    assert [lv.shape for lv in levels] == [(3, 1, 2, 128, 96), (3, 1, 2, 64, 48), (3, 1, 2, 32, 24)]
    assert [lv.downsampling[3:] for lv in levels] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert [lv.chunks for lv in levels] == [
        (1, 1, 1, 32, 32),
        (1, 1, 1, 32, 32),
        (1, 1, 1, 32, 24),
    ]
    image = tlcore.open_lazy(sample.path, level=1)
    assert image.pixel_sizes.x == pytest.approx(1.0)
    with tifffile.TiffFile(sample.path) as tf:
        want = tf.series[0].levels[1].asarray()
    assert np.array_equal(image.data[2, 0, 1, 10:40, 5:30].compute(), want[2, 1, 10:40, 5:30])


def test_big_striped_pages_split_into_bands_of_whole_strips(
    tmp_path: Path, writers: Writers
) -> None:
    sample = writers["big-striped"](tmp_path)
    (level,) = tlcore.levels(sample.path)
    assert level.chunks is not None
    rows = level.chunks[3]
    assert rows % 16 == 0 and 16 <= rows < 1600 and level.chunks[4] == 1400
    image = tlcore.open_lazy(sample.path)
    crop = image.data[0, 0, 0, 700:900, 100:300].compute()
    assert np.array_equal(crop, tifffile.imread(sample.path)[700:900, 100:300])


# -- bad files ---------------------------------------------------------------------------------
def test_flim_modulo_is_refused_naming_file_scene_and_modulo(testdata: Path) -> None:
    path = testdata / "ome-tiff/FLIM-modulo-sample.ome.tif"
    assert tlcore.list_scenes(path) == ["Image:0"]
    for call in (tlcore.levels, tlcore.time_axis, tlcore.open_lazy):
        with pytest.raises(tlcore.ReaderError) as info:
            call(path)
        message = str(info.value)
        assert str(path) in message and "'Image:0'" in message and "Modulo" in message


def test_cli_info_reports_the_modulo_file_and_fails(testdata: Path) -> None:
    path = testdata / "ome-tiff/FLIM-modulo-sample.ome.tif"
    result = subprocess.run([str(TLCORE), "info", str(path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "Modulo" in result.stderr and str(path) in result.stderr


def _truncated(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("which", ["stuck", "ome-timelapse", "ome-pyramid", "imagej"])
def test_truncated_copy_is_a_clear_error(
    testdata: Path, tmp_path: Path, writers: Writers, which: str, fraction: float
) -> None:
    if which == "stuck":
        src = testdata / "tiff/stuck.tif"
    elif which == "imagej":
        src = writers["imagej-hyperstack"](tmp_path).path
    else:
        src = writers[which](tmp_path).path
    path = _truncated(src, tmp_path / f"cut-{src.name}", fraction)
    with pytest.raises(tlcore.TlcoreError) as info:
        image = tlcore.open_lazy(path)
        image.data.compute()
    message = str(info.value)
    assert str(path) in message and "truncated" in message


def test_file_cut_after_opening_fails_the_read_not_with_garbage(tmp_path: Path) -> None:
    path = tmp_path / "shrinks.tif"
    tifffile.imwrite(path, np.ones((4, 32, 32), np.uint16), metadata=None, photometric="minisblack")
    image = tlcore.open_lazy(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(tlcore.ReaderError) as info:
        image.data[3].compute()
    assert str(path) in str(info.value) and "Image:0" in str(info.value)


def test_corrupt_compressed_strip_fails_the_read(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tf:
        offset, count = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    with open(path, "r+b") as fh:  # damage our own copy, in place, same size
        fh.seek(offset + count // 2)
        fh.write(b"\xff" * 16)
    with pytest.raises(tlcore.ReaderError, match=r"page 0.*damaged") as info:
        tlcore.open_lazy(path).data.compute()
    assert str(path) in str(info.value)


def test_garbage_with_tif_extension_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 100)
    with pytest.raises(tlcore.NoReaderError) as info:
        tlcore.open_lazy(path)
    assert str(path) in str(info.value) and "tiff:" in str(info.value)


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_info_json(tmp_path: Path, writers: Writers) -> None:
    sample = writers["ome-timelapse"](tmp_path)
    result = subprocess.run(
        [str(TLCORE), "info", str(sample.path), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["reader"] == "ome-tiff"
    first, second = info["scenes"]
    assert first["id"] == "Image:0" and first["shape"] == [4, 2, 3, 64, 48]
    assert first["timestamps"] == [0.0, 6.0, 12.0, 18.0] and first["interval"] == 2.5
    assert first["channel_names"] == ["GFP", "RFP"]
    assert first["chunks"] == [1, 1, 1, 64, 48]
    assert first["pixel_sizes"] == {"z": 1.5, "y": 0.25, "x": 0.25}
    assert second["id"] == "Image:1" and second["shape"] == [5, 1, 1, 40, 30]


def test_cli_info_json_on_shared_tiffs(testdata: Path) -> None:
    for name, reader in [
        ("tiff/stuck.tif", "tiff"),
        ("ome-tiff/FOV7_HV110_P0500510000.ome.tiff", "ome-tiff"),
    ]:
        path = testdata / name
        result = subprocess.run(
            [str(TLCORE), "info", str(path), "--json"], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["reader"] == reader


# -- S3 ----------------------------------------------------------------------------------------
@pytest.fixture
def s3_bucket(s3_server: dict[str, Any], s3_new_bucket: str) -> Any:
    import s3fs

    return s3_new_bucket, s3fs.S3FileSystem(**s3_server)


def test_ome_pyramid_from_s3(
    s3_server: dict[str, Any], s3_bucket: Any, tmp_path: Path, writers: Writers
) -> None:
    bucket, fs = s3_bucket
    sample = writers["ome-pyramid"](tmp_path)
    fs.put(str(sample.path), f"{bucket}/pyramid.ome.tiff")
    url = f"s3://{bucket}/pyramid.ome.tiff"
    image = tlcore.open_lazy(url, storage_options=s3_server)
    assert image.reader == "ome-tiff" and image.shape == sample.shape
    assert len(tlcore.levels(url, storage_options=s3_server)) == 3
    local = tlcore.open_lazy(sample.path)
    box = (1, 0, 1, slice(20, 90), slice(10, 70))
    assert np.array_equal(image.data[box].compute(), local.data[box].compute())
    assert np.array_equal(image.data.compute(), local.data.compute())


def test_plain_stack_from_s3_with_tiff_dims(
    s3_server: dict[str, Any], s3_bucket: Any, testdata: Path
) -> None:
    bucket, fs = s3_bucket
    fs.put(str(testdata / "tiff/stuck.tif"), f"{bucket}/stuck.tif")
    options = {**s3_server, "tiff_dims": "ZYX"}
    image = tlcore.open_lazy(f"s3://{bucket}/stuck.tif", storage_options=options)
    assert image.reader == "tiff" and image.shape == (1, 1, 5, 512, 512)
    want = tifffile.imread(testdata / "tiff/stuck.tif", key=2)[100:200, 300:400]
    assert np.array_equal(image.data[0, 0, 2, 100:200, 300:400].compute(), want)


# -- processes ---------------------------------------------------------------------------------
def test_forked_child_reopens_the_file_it_inherited(tmp_path: Path, writers: Writers) -> None:
    import multiprocessing

    from tlcore_tiff.array import TiffArrayReader
    from tlcore_tiff.meta import file_meta

    sample = writers["ome-timelapse"](tmp_path)
    source = Source.from_any(sample.path)
    reader = TiffArrayReader(source, "ome", file_meta(source, "ome").scenes[0], 0)
    want = reader[3, 1, 2]  # the parent opens its handle, which a forked child inherits
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(reader, queue))
    child.start()
    got, own_handle = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert np.array_equal(got, want) and own_handle


def _read_in_child(reader: Any, queue: Any) -> None:
    got = reader[3, 1, 2]
    queue.put((got, reader._handle.pid == os.getpid()))
