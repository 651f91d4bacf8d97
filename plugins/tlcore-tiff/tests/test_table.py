"""The page-table path (tiles and strips decoded with imagecodecs' public codecs, chosen by the
TIFF tags, from offsets parsed once) against tifffile's own ``asarray``, on files tifffile
writes: compressions, predictors, dtypes, byte orders, tiled and stripped, planar, multi-page,
OME series. Levels the table cannot decode fall back to tifffile's decoder, still exact."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tlcore.io.source import Source
from tlcore_tiff.array import TiffArrayReader
from tlcore_tiff.fetch import plan_requests
from tlcore_tiff.meta import file_meta


def _reader(path: Path) -> TiffArrayReader:
    source = Source.from_any(str(path))
    return TiffArrayReader(source, "ome", file_meta(source, "ome").scenes[0], 0)


def _reference(
    path: Path, tczyx: Callable[[np.ndarray, str], np.ndarray]
) -> tuple[np.ndarray, Any]:
    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        return tczyx(series.asarray(), series.axes), tf.pages[0]


def _check(reader: TiffArrayReader, expected: np.ndarray) -> None:
    full = tuple(slice(0, n) for n in expected.shape)
    got = reader.read(full)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    rng = np.random.default_rng(3)
    t, c, z, y, x = expected.shape
    for _ in range(4):  # crops that start and end inside tiles and strips
        y0, x0 = int(rng.integers(0, y - 1)), int(rng.integers(0, x - 1))
        y1, x1 = int(rng.integers(y0 + 1, y + 1)), int(rng.integers(x0 + 1, x + 1))
        box = (slice(0, t), slice(0, c), slice(1, z), slice(y0, y1), slice(x0, x1))
        np.testing.assert_array_equal(reader.read(box), expected[box])


def _data(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype).kind
    if kind == "f":
        # smooth values, so that predictors and codecs see realistic data
        base = np.cumsum(rng.normal(size=shape), axis=-1 if shape[-1] > 4 else -2)
        return base.astype(dtype)
    info = np.iinfo(dtype)
    low, high = max(info.min, -1000), min(info.max, 1000)
    return rng.integers(low, high, shape, endpoint=True).astype(dtype)


# compression, predictor, dtypes (tiled and stripped each)
BYTE_CASES = [
    (None, None, ("uint8", "int16", "uint16", "float32", "float64", "int32")),
    ("zlib", None, ("uint8", "uint16", "float32")),
    ("zlib", 2, ("uint8", "int16", "uint16", "uint32")),
    ("zlib", 3, ("float32", "float64")),
    ("zstd", 2, ("uint16",)),
    ("zstd", 3, ("float32",)),
    ("lzw", 2, ("uint16", "int8")),
    ("lzw", None, ("uint8",)),
    ("packbits", None, ("uint8", "uint16")),
    ("lzma", 2, ("uint16",)),
    ("adobe_deflate", 2, ("uint16",)),
]


@pytest.mark.parametrize("tiled", [True, False], ids=["tiled", "strips"])
@pytest.mark.parametrize(
    ("compression", "predictor", "dtype"),
    [(c, p, d) for c, p, ds in BYTE_CASES for d in ds],
)
def test_byte_codecs_equal_tifffile(
    tmp_path: Path,
    to_tczyx: Callable[..., np.ndarray],
    compression: str | None,
    predictor: int | None,
    dtype: str,
    tiled: bool,
) -> None:
    # 3 planes of 70 x 90: edge tiles padded (32 x 32), the last strip short (16 rows)
    data = _data(dtype, (3, 70, 90))
    path = tmp_path / "x.ome.tif"
    layout: dict[str, Any] = {"tile": (32, 32)} if tiled else {"rowsperstrip": 16}
    tifffile.imwrite(path, data, ome=True, compression=compression, predictor=predictor,
                     metadata={"axes": "ZYX"}, **layout)  # fmt: skip
    reader = _reader(path)
    assert reader.table.codec is not None, reader.table.unsupported
    expected, page = _reference(path, to_tczyx)
    assert page.is_tiled == tiled
    _check(reader, expected)


@pytest.mark.parametrize("byteorder", [">", "<"])
@pytest.mark.parametrize("planar", ["contig", "separate"])
@pytest.mark.parametrize("tiled", [True, False], ids=["tiled", "strips"])
def test_rgb_planar_and_byte_order_equal_tifffile(
    tmp_path: Path, to_tczyx: Callable[..., np.ndarray], byteorder: str, planar: str, tiled: bool
) -> None:
    shape = (2, 3, 50, 40) if planar == "separate" else (2, 50, 40, 3)
    data = _data("uint16", shape, seed=1)
    path = tmp_path / "rgb.ome.tif"
    layout: dict[str, Any] = {"tile": (16, 32)} if tiled else {"rowsperstrip": 7}
    tifffile.imwrite(path, data, ome=True, byteorder=byteorder, photometric="rgb",
                     planarconfig=planar, compression="zlib", predictor=2,
                     metadata={"axes": "ZSYX" if planar == "separate" else "ZYXS"},
                     **layout)  # fmt: skip
    reader = _reader(path)
    assert reader.table.codec is not None, reader.table.unsupported
    assert reader.table.planar == (planar == "separate")
    expected, _ = _reference(path, to_tczyx)
    _check(reader, expected)


@pytest.mark.parametrize(
    ("compression", "dtype", "rgb"),
    [
        ("jpeg", "uint8", False),
        ("jpeg", "uint8", True),
        ("png", "uint16", False),
        ("webp", "uint8", True),
        ("jpeg2000", "uint16", False),
        ("jpegxl", "uint8", False),
        ("jpegxr", "uint8", False),
    ],
)
@pytest.mark.parametrize("tiled", [True, False], ids=["tiled", "strips"])
def test_image_codecs_equal_tifffile(
    tmp_path: Path,
    to_tczyx: Callable[..., np.ndarray],
    compression: str,
    dtype: str,
    rgb: bool,
    tiled: bool,
) -> None:
    shape = (2, 48, 64, 3) if rgb else (2, 48, 64)
    data = _data(dtype, shape, seed=2)
    path = tmp_path / "img.ome.tif"
    layout: dict[str, Any] = {"tile": (32, 32)} if tiled else {"rowsperstrip": 16}
    try:
        tifffile.imwrite(path, data, ome=True, compression=compression,
                         photometric="rgb" if rgb else "minisblack",
                         metadata={"axes": "ZYXS" if rgb else "ZYX"}, **layout)  # fmt: skip
    except (ValueError, NotImplementedError, KeyError) as exc:  # this build cannot encode it
        pytest.skip(f"tifffile cannot write {compression}: {exc}")
    reader = _reader(path)
    assert reader.table.codec is not None, reader.table.unsupported
    expected, _ = _reference(path, to_tczyx)
    _check(reader, expected)


def test_ome_timelapse_series_and_pickled_table(
    tmp_path: Path, to_tczyx: Callable[..., np.ndarray]
) -> None:
    """A multi-page OME series (TCZYX), read by a reader that crossed a pickle: its table, not
    a parse of the file, says where the tiles are."""
    data = _data("uint16", (3, 2, 4, 64, 80), seed=4)
    path = tmp_path / "t.ome.tif"
    tifffile.imwrite(path, data, ome=True, tile=(32, 32), compression="zstd", predictor=2,
                     metadata={"axes": "TCZYX"})  # fmt: skip
    reader = pickle.loads(pickle.dumps(_reader(path)))
    assert reader.table.offsets.shape == (3 * 2 * 4, 2 * 3)
    expected, _ = _reference(path, to_tczyx)
    np.testing.assert_array_equal(expected, data)
    _check(reader, expected)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: {"compression": "lerc"}, "compression"),
        (lambda: {"data": np.random.default_rng(0).random((2, 40, 50)) > 0.5}, "1-bit"),
    ],
    ids=["lerc", "bilevel"],
)
def test_unsupported_levels_fall_back_to_tifffile_exactly(
    tmp_path: Path,
    to_tczyx: Callable[..., np.ndarray],
    make: Callable[[], dict[str, Any]],
    why: str,
) -> None:
    options = make()
    data = options.pop("data", _data("uint16", (2, 40, 50), seed=5))
    path = tmp_path / "f.ome.tif"
    try:
        tifffile.imwrite(path, data, ome=True, tile=(16, 16), metadata={"axes": "ZYX"},
                         **options)  # fmt: skip
    except (ValueError, NotImplementedError, KeyError) as exc:
        pytest.skip(f"tifffile cannot write it: {exc}")
    reader = _reader(path)
    assert reader.table.codec is None
    assert why in str(reader.table.unsupported)
    expected, _ = _reference(path, to_tczyx)
    _check(reader, expected)


def test_requests_bridge_small_gaps_within_the_overread_budget() -> None:
    # touching and overlapping ranges are one request; an IFD-sized gap is always bridged
    assert plan_requests([(0, 10), (10, 5), (12, 8)]) == [(0, 20)]
    assert plan_requests([(0, 100), (1100, 100)], free_gap=1000) == [(0, 1200)]
    # 4 ranges of 100 bytes 150 apart: bridging all costs 450 > 1x the 400 needed; the budget
    # (2x: 400 bytes of gaps) bridges two of the three gaps
    found = plan_requests([(i * 250, 100) for i in range(4)], free_gap=0, max_overread=2.0,
                          request_overhead=0)  # fmt: skip
    assert len(found) == 2 and sum(b - a for a, b in found) <= 800
    # a request is not grown past max_request
    found = plan_requests([(i * 110, 100) for i in range(10)], free_gap=0, max_request=300,
                          request_overhead=0)  # fmt: skip
    assert all(b - a <= 300 for a, b in found) and len(found) == 5


def test_requests_count_their_headers_against_the_overread_budget() -> None:
    # 100-byte ranges 300 apart, 500 bytes of headers per request: one request for all (1,000
    # bytes of range plus 500 of headers) beats four (400 plus 2,000)
    ranges = [(i * 400, 100) for i in range(4)]
    assert plan_requests(ranges, free_gap=0, max_overread=3.0, request_overhead=500) == [(0, 1300)]
    # the same ranges 10,000 apart: bridging would cost far more than the headers it saves
    far = [(i * 10_100, 100) for i in range(4)]
    assert len(plan_requests(far, free_gap=0, max_overread=3.0, request_overhead=500)) == 4
    # gaps bridged for free (an IFD) count too: 4 KiB gaps between 1 KiB ranges would already
    # be 4x the needed bytes, so nothing else is bridged on top of them
    # the ranges still missing of a crop whose other tiles are held: the bound is the crop's
    missing = [(0, 100), (1000, 100)]
    assert len(plan_requests(missing, free_gap=0, request_overhead=0)) == 2
    assert plan_requests(missing, free_gap=0, request_overhead=0, basis=1000) == [(0, 1100)]
    ifds = [(i * 5120, 1024) for i in range(4)] + [(1_000_000, 1024)]
    found = plan_requests(ifds, max_overread=3.0, request_overhead=0)
    assert found == [(0, 3 * 5120 + 1024), (1_000_000, 1_001_024)]
