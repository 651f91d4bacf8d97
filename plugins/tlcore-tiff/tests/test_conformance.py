"""Both TIFF readers against tlcore's conformance kit: the shared real files and files written
here with tifffile (OME timestamps, multiple series, SubIFD pyramids, ImageJ hyperstacks, RGB,
tiled, zlib/zstd, big-endian), with pixels checked against tifffile's own full read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tlcore.testing import Expected, ReaderConformance

# The writers live in conftest.py (fixture `writers`); their names are listed here because
# parametrization happens at collection time.
OME_GENERATED = ["ome-timelapse", "ome-second-series", "ome-pyramid", "ome-rgb"]
TIFF_GENERATED = [
    "imagej-hyperstack",
    "plain-stack",
    "planar-rgb-tiled",
    "big-striped",
    "bigendian-zstack",
]


def _shared(name: str, **kwargs: Any) -> Callable[[Path, Callable[..., Any]], Expected]:
    def make(testdata: Path, reference: Callable[..., Any]) -> Expected:
        path = testdata / name
        fields = dict(kwargs)
        rename = fields.pop("rename", None)
        return Expected(
            path=path, reference=reference(path, fields.get("scene", 0), 0, rename), **fields
        )

    return make


SHARED_OME = {
    "swatch-22-scenes": _shared(
        "ome-tiff/6x4y1z1t1c8b-swatch-2s2p4w2ws.ome.tiff",
        shape=(1, 1, 1, 4, 6),
        scenes=[f"Image:{i}" for i in range(22)],
        n_levels=1,
        dtype="uint8",
        channel_names=["Channel:0:0"],
        pixel_sizes=(None, 10000.0, 10000.0),
        timestamps=False,
    ),
    "swatch-scene-5": _shared(
        "ome-tiff/6x4y1z1t1c8b-swatch-2s2p4w2ws.ome.tiff",
        shape=(1, 1, 1, 4, 6),
        scene=5,
        dtype="uint8",
    ),
    "fov7-bigendian": _shared(
        "ome-tiff/FOV7_HV110_P0500510000.ome.tiff",
        shape=(1, 1, 1, 512, 512),
        scenes=["Image:0"],
        n_levels=1,
        dtype="uint8",
        pixel_sizes=(None, None, None),
    ),
}

SHARED_TIFF = {
    "ch1-16bit-imagej": _shared(
        "tiff/CH1_16bit.tif",
        shape=(1, 1, 1, 408, 406),
        scenes=["Image:0"],
        n_levels=1,
        dtype="uint16",
    ),
    # Five unlabelled pages: read as five timepoints (README, "Which axis is which").
    "stuck-pages-as-time": _shared(
        "tiff/stuck.tif",
        shape=(5, 1, 1, 512, 512),
        scenes=["Image:0"],
        n_levels=1,
        dtype="uint16",
        timestamps=False,
        rename={"Q": "T"},
    ),
}


def _expected(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    shared: dict[str, Callable[[Path, Callable[..., Any]], Expected]],
) -> Expected:
    reference = request.getfixturevalue("tifffile_reference_factory")
    if request.param in shared:
        return shared[request.param](request.getfixturevalue("testdata"), reference)
    sample = request.getfixturevalue("writers")[request.param](tmp_path)
    return Expected(
        path=sample.path,
        shape=sample.shape,
        scenes=sample.scenes,
        scene=sample.scene,
        n_levels=sample.n_levels,
        interval=sample.interval,
        timestamps=sample.timestamps,
        dtype=sample.dtype,
        channel_names=sample.channel_names,
        pixel_sizes=sample.pixel_sizes,
        reference=reference(sample.path, sample.scene, 0, sample.rename),
    )


class TestOmeTiffConformance(ReaderConformance):
    reader_name = "ome-tiff"

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path:
        path = directory / "kit-sample.ome.tif"
        tifffile.imwrite(path, pixels, ome=True, metadata={"axes": "TCZYX"})
        return path

    @pytest.fixture(params=[*SHARED_OME, *OME_GENERATED])
    def expected(self, request: pytest.FixtureRequest, tmp_path: Path) -> Expected:
        return _expected(request, tmp_path, SHARED_OME)


class TestTiffConformance(ReaderConformance):
    reader_name = "tiff"

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path:
        # An ImageJ hyperstack stores T, Z, C outside the pages.
        path = directory / "kit-sample.tif"
        tifffile.imwrite(
            path, pixels.transpose(0, 2, 1, 3, 4), imagej=True, metadata={"axes": "TZCYX"}
        )
        return path

    @pytest.fixture(params=[*SHARED_TIFF, *TIFF_GENERATED])
    def expected(self, request: pytest.FixtureRequest, tmp_path: Path) -> Expected:
        return _expected(request, tmp_path, SHARED_TIFF)
