"""With every plugin installed at once, each shared sample file goes to the right reader and
describes itself; the unreadable ones fail with an error naming the file and the scene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tlcore
from tlcore.io.source import Source
from tlcore.readers.registry import get_registry

# Readable samples: the reader that must open each, and what its first scene holds.
READABLE = {
    "nd2/example-cerevisiae.nd2": ("nd2", (1, 2, 1, 256, 256)),
    "nd2/example-multichannel.nd2": ("nd2", (1, 4, 1, 256, 256)),
    "nd2/example-pbmc.nd2": ("nd2", (1, 4, 1, 256, 256)),
    "nd2/example-timelapse.nd2": ("nd2", (53, 1, 1, 64, 64)),
    "nd2/example-zstack.nd2": ("nd2", (1, 1, 11, 128, 128)),
    "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi": ("czi", (3, 2, 5, 170, 240)),
    "czi/RGB-8bit.czi": ("czi", (1, 3, 1, 624, 924)),
    "czi/WellD6-7_S2.czi": ("czi", (1, 1, 1, 440, 544)),
    "czi/mosaic_test.czi": ("czi", (1, 1, 1, 624, 1756)),
    "czi/s_1_t_1_c_1_z_1.czi": ("czi", (1, 1, 1, 325, 475)),
    "czi/tiles_time_z.czi": ("czi", (2, 2, 2, 512, 512)),
    "lif/PR2729_frameOrderCombinedScanTypes.lif": ("lif", (2, 2, 3, 127, 127)),
    "ome-tiff/6x4y1z1t1c8b-swatch-2s2p4w2ws.ome.tiff": ("ome-tiff", (1, 1, 1, 4, 6)),
    "ome-tiff/FOV7_HV110_P0500510000.ome.tiff": ("ome-tiff", (1, 1, 1, 512, 512)),
    "tiff/CH1_16bit.tif": ("tiff", (1, 1, 1, 408, 406)),
    "tiff/stuck.tif": ("tiff", (5, 1, 1, 512, 512)),  # unlabelled pages are T (see the plugin)
    "ome-zarr/example-timelapse_from_nd2.ome.zarr": ("ome-zarr", (53, 1, 1, 64, 64)),
    "ome-zarr/fake-series-2.zarr": ("ome-zarr", (1, 1, 1, 512, 512)),
    "ome-zarr/image-03.zarr": ("ome-zarr", (1, 1, 2, 100, 100)),
    "ome-zarr/image-04.zarr": ("ome-zarr", (1, 1, 2, 64, 64)),
}
# Unreadable samples: (scene, words the error must contain).
UNREADABLE = {
    "lif/LeicaLASX_wavelength-sweep_example.lif": ("x_y_lambdaEmi", "lambda"),
    "ome-tiff/FLIM-modulo-sample.ome.tif": (0, "Modulo"),
}


@pytest.mark.parametrize("relative", sorted(READABLE))
def test_each_sample_opens_with_the_right_reader(testdata: Path, relative: str) -> None:
    reader, shape = READABLE[relative]
    path = testdata / relative
    assert get_registry().select(Source.from_any(path)) == reader
    image = tlcore.open_lazy(path)
    assert image.reader == reader and image.shape == shape
    assert len(image.channel_names) == shape[1]
    assert image.time_axis.size == shape[0]


def test_real_timestamps(testdata: Path) -> None:
    nd2 = tlcore.time_axis(testdata / "nd2/example-timelapse.nd2")
    assert nd2.timestamps is not None and len(nd2.timestamps) == 53
    steps = [b - a for a, b in zip(nd2.timestamps, nd2.timestamps[1:])]
    assert sum(steps) / len(steps) == pytest.approx(0.5, abs=0.02)
    czi = tlcore.time_axis(testdata / "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi")
    assert czi.timestamps is not None and len(czi.timestamps) == 3
    assert [round(b - a) for a, b in zip(czi.timestamps, czi.timestamps[1:])] == [60, 60]


@pytest.mark.parametrize("relative", sorted(UNREADABLE))
def test_unreadable_samples_name_file_scene_and_cause(testdata: Path, relative: str) -> None:
    scene, words = UNREADABLE[relative]
    path = testdata / relative
    with pytest.raises(tlcore.TlcoreError) as info:
        tlcore.open_lazy(path, scene=scene)
    message = str(info.value)
    assert str(path) in message and words in message
    result = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "info", str(path), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert words in result.stderr


def test_info_json_for_one_file_of_each_format(testdata: Path) -> None:
    for relative in ("nd2/example-timelapse.nd2", "czi/WellD6-7_S2.czi", "tiff/stuck.tif"):
        result = subprocess.run(
            [sys.executable, "-m", "tlcore.cli", "info", str(testdata / relative), "--json"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["reader"] == READABLE[relative][0]
        assert info["scenes"], info
