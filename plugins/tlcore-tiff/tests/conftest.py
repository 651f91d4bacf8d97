"""TIFF files the tests write with tifffile, and an independent TCZYX reference read of them.

Each writer returns a :class:`Sample`: where the file is, what it holds (for
``tlcore.testing.Expected``) and how to read it back with tifffile alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile


def tczyx(data: np.ndarray, axes: str, rename: dict[str, str] | None = None) -> np.ndarray:
    """``data`` with tifffile ``axes`` as TCZYX: axes renamed by ``rename`` (e.g. Q -> T), RGB
    samples folded into C (channel-major), missing axes of size 1. Written independently of
    the plugin's own layout code."""
    axes = "".join((rename or {}).get(a, a) for a in axes)
    assert set(axes) <= set("TCSZYX") and len(set(axes)) == len(axes), axes
    order = [axes.index(a) for a in "TCSZYX" if a in axes]
    data = data.transpose(order)
    present = [a for a in "TCSZYX" if a in axes]
    sizes = dict(zip(present, data.shape))
    t, c, s, z, y, x = (sizes.get(a, 1) for a in "TCSZYX")
    return data.reshape(t, c * s, z, y, x)


def tifffile_reference(
    path: Path | str, series: int = 0, level: int = 0, rename: dict[str, str] | None = None
) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        with tifffile.TiffFile(path) as tf:
            s = tf.series[series].levels[level]
            return tczyx(s.asarray(), s.axes, rename)

    return read


@dataclass
class Sample:
    path: Path
    shape: tuple[int, int, int, int, int]
    dtype: str
    scenes: list[str] | None = None
    scene: int = 0
    n_levels: int = 1
    interval: float | None = None
    timestamps: bool | None = None
    channel_names: list[str] | None = None
    pixel_sizes: tuple[float | None, float | None, float | None] | None = None
    rename: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


RNG = np.random.default_rng(1234)


def _noise(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    if info is None:
        return RNG.standard_normal(shape).astype(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def write_ome_timelapse(tmp: Path) -> Sample:
    """Two OME images: TCZYX with DeltaT in ms (first plane of each T = 6 s apart), a
    TimeIncrement, nm pixel sizes and channel names (zlib); then a TYX uint8 image."""
    t, c, z, y, x = 4, 2, 3, 64, 48
    planes = t * c * z
    path = tmp / "timelapse.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            _noise((t, c, z, y, x), np.uint16),
            compression="zlib",
            metadata={
                "axes": "TCZYX",
                "Name": "first",
                "Plane": {
                    "DeltaT": [1000.0 * i for i in range(planes)],
                    "DeltaTUnit": ["ms"] * planes,
                },
                "TimeIncrement": 2.5,
                "TimeIncrementUnit": "s",
                "PhysicalSizeX": 250,
                "PhysicalSizeXUnit": "nm",
                "PhysicalSizeY": 250,
                "PhysicalSizeYUnit": "nm",
                "PhysicalSizeZ": 1.5,
                "Channel": {"Name": ["GFP", "RFP"]},
            },
        )
        tw.write(_noise((5, 40, 30), np.uint8), metadata={"axes": "TYX", "Name": "second"})
    return Sample(
        path,
        (t, c, z, y, x),
        "uint16",
        scenes=["Image:0", "Image:1"],
        interval=2.5,
        timestamps=True,
        channel_names=["GFP", "RFP"],
        pixel_sizes=(1.5, 0.25, 0.25),
        extra={"timestamps": (0.0, 6.0, 12.0, 18.0)},
    )


def write_ome_second_series(tmp: Path) -> Sample:
    sample = write_ome_timelapse(tmp)
    return Sample(
        sample.path,
        (5, 1, 1, 40, 30),
        "uint8",
        scenes=["Image:0", "Image:1"],
        scene=1,
        timestamps=False,
        channel_names=["Channel:1:0"],
        pixel_sizes=(None, None, None),
    )


def write_ome_pyramid(tmp: Path) -> Sample:
    """A tiled (32x32), zstd-compressed OME-TIFF with two SubIFD sub-resolutions."""
    t, z, y, x = 3, 2, 128, 96
    data = _noise((t, z, y, x), np.uint16)
    path = tmp / "pyramid.ome.tiff"
    opts: dict[str, Any] = {"tile": (32, 32), "compression": "zstd"}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            data,
            subifds=2,
            metadata={"axes": "TZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5},
            **opts,
        )
        tw.write(data[..., ::2, ::2], subfiletype=1, **opts)
        tw.write(data[..., ::4, ::4], subfiletype=1, **opts)
    return Sample(
        path,
        (t, 1, z, y, x),
        "uint16",
        n_levels=3,
        timestamps=False,
        pixel_sizes=(None, 0.5, 0.5),
    )


def write_ome_rgb(tmp: Path) -> Sample:
    """An RGB OME-TIFF timelapse: samples become channels."""
    path = tmp / "rgb.ome.tif"
    tifffile.imwrite(
        path,
        _noise((2, 48, 64, 3), np.uint8),
        ome=True,
        photometric="rgb",
        metadata={"axes": "TYXS"},
    )
    return Sample(path, (2, 3, 1, 48, 64), "uint8", timestamps=False)


def write_imagej_hyperstack(tmp: Path) -> Sample:
    """An ImageJ hyperstack TZCYX with frame interval, Z spacing and pixel size."""
    path = tmp / "hyperstack.tif"
    tifffile.imwrite(
        path,
        _noise((5, 2, 2, 40, 50), np.uint16),
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "finterval": 0.5, "spacing": 2.0, "unit": "um"},
    )
    return Sample(
        path,
        (5, 2, 2, 40, 50),
        "uint16",
        interval=0.5,
        timestamps=False,
        pixel_sizes=(2.0, 0.2, 0.2),
    )


def write_plain_stack(tmp: Path) -> Sample:
    """Six uncompressed pages without any metadata: tifffile's 'generic' series (axes IYX)."""
    path = tmp / "plain-stack.tif"
    with tifffile.TiffWriter(path) as tw:
        for _ in range(6):
            tw.write(_noise((30, 40), np.int16), metadata=None, contiguous=False)
    return Sample(path, (6, 1, 1, 30, 40), "int16", rename={"I": "T"})


def write_planar_rgb_tiled(tmp: Path) -> Sample:
    """RGB stored as separate sample planes, tiled 16x16 with partial edge tiles, zlib."""
    path = tmp / "planar-rgb.tif"
    tifffile.imwrite(
        path,
        _noise((3, 40, 56), np.uint8),
        photometric="rgb",
        planarconfig="separate",
        tile=(16, 16),
        compression="zlib",
        metadata={"axes": "SYX"},
    )
    return Sample(path, (1, 3, 1, 40, 56), "uint8", channel_names=["R", "G", "B"])


def write_big_striped(tmp: Path) -> Sample:
    """One 1600x1400 uint16 page in zlib strips of 16 rows: larger than one chunk, so the
    dask array splits it into bands of whole strips."""
    path = tmp / "big-striped.tiff"
    tifffile.imwrite(
        path,
        _noise((1600, 1400), np.uint16),
        compression="zlib",
        rowsperstrip=16,
        metadata=None,
    )
    return Sample(path, (1, 1, 1, 1600, 1400), "uint16")


def write_bigendian_zstack(tmp: Path) -> Sample:
    """Big-endian float32 pages with tifffile's 'shaped' metadata naming the axes ZYX."""
    path = tmp / "bigendian.tif"
    tifffile.imwrite(
        path,
        _noise((3, 20, 24), np.float32),
        byteorder=">",
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )
    return Sample(path, (1, 1, 3, 20, 24), "float32")


OME_WRITERS: dict[str, Callable[[Path], Sample]] = {
    "ome-timelapse": write_ome_timelapse,
    "ome-second-series": write_ome_second_series,
    "ome-pyramid": write_ome_pyramid,
    "ome-rgb": write_ome_rgb,
}
TIFF_WRITERS: dict[str, Callable[[Path], Sample]] = {
    "imagej-hyperstack": write_imagej_hyperstack,
    "plain-stack": write_plain_stack,
    "planar-rgb-tiled": write_planar_rgb_tiled,
    "big-striped": write_big_striped,
    "bigendian-zstack": write_bigendian_zstack,
}


@pytest.fixture
def writers() -> dict[str, Callable[[Path], Sample]]:
    return {**OME_WRITERS, **TIFF_WRITERS}


@pytest.fixture
def tifffile_reference_factory() -> Callable[..., Callable[[], np.ndarray]]:
    return tifffile_reference


@pytest.fixture
def to_tczyx() -> Callable[..., np.ndarray]:
    return tczyx


@pytest.fixture(scope="module")
def tiled_movie(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., tuple[Path, np.ndarray]]:
    """Factory: ``tiled_movie(name, shape, seed, tile)`` writes random uint16 TCZYX pixels as
    a zlib-tiled OME-TIFF ``name`` (``tile`` x ``tile`` tiles) and returns its path and pixels."""

    def make(name: str, shape: tuple[int, ...], seed: int, tile: int) -> tuple[Path, np.ndarray]:
        data = np.random.default_rng(seed).integers(0, 900, shape).astype(np.uint16)
        path = tmp_path_factory.mktemp("tiff-movie") / name
        tifffile.imwrite(path, data, ome=True, tile=(tile, tile), compression="zlib",
                         metadata={"axes": "TCZYX"})  # fmt: skip
        return path, data

    return make


@pytest.fixture
def upload(s3_server: dict[str, Any], s3_new_bucket: str) -> Callable[[Path], str]:
    """Factory: ``upload(path)`` puts the local file into the test's new bucket on the
    loopback S3 server and returns its ``s3://`` URL."""
    import s3fs

    def put(path: Path) -> str:
        s3fs.S3FileSystem(**s3_server).put_file(str(path), f"{s3_new_bucket}/{path.name}")
        return f"s3://{s3_new_bucket}/{path.name}"

    return put
