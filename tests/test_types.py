from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tlcore import Level, ReaderInfo, Source, TimeAxis
from tlcore.lazy import read_stats, split_index

from .support.readers import NumpyArrayReader


def test_reader_info_extension_matching() -> None:
    info = ReaderInfo("x", (".OME.Zarr", ".zarr"))
    assert info.extensions == (".ome.zarr", ".zarr")
    assert info.match_length("a.ome.zarr") == 9
    assert info.match_length("A.ZARR") == 5
    assert info.match_length(".zarr") is None  # a bare extension is not a file name
    assert info.match_length("a.tif") is None
    assert ReaderInfo("any", ("*",)).match_length("whatever") == 0
    with pytest.raises(ValueError, match=r"must start with '\.'"):
        ReaderInfo("bad", ("zarr",))


def test_time_axis_rules() -> None:
    assert TimeAxis(3, interval=0.5).seconds() == (0.0, 0.5, 1.0)
    assert TimeAxis(2, timestamps=[0, 1.25]).seconds() == (0.0, 1.25)
    assert TimeAxis(4).seconds() is None
    with pytest.raises(ValueError, match="2 timestamps for 3 timepoints"):
        TimeAxis(3, timestamps=[0, 1])
    with pytest.raises(ValueError, match="positive"):
        TimeAxis(3, interval=0.0)


def test_level_needs_five_axes() -> None:
    with pytest.raises(ValueError, match="TCZYX"):
        Level(0, (1, 2, 3))  # type: ignore[arg-type]


def test_source_normalises_paths_and_urls(tmp_path: Path) -> None:
    local = Source.from_any(tmp_path / "a.ome.zarr")
    assert (
        local.is_local and local.uri == str(tmp_path / "a.ome.zarr") and local.name == "a.ome.zarr"
    )
    assert Source.from_any(f"file://{tmp_path}/b.nd2").uri == str(tmp_path / "b.nd2")
    remote = Source.from_any("s3://bucket/dir/c.ome.zarr/", {"anon": True})
    assert remote.protocol == "s3" and remote.uri == "s3://bucket/dir/c.ome.zarr"
    assert remote.name == "c.ome.zarr" and not remote.is_local
    assert remote == Source.from_any("s3://bucket/dir/c.ome.zarr", {"anon": True})
    assert remote != Source.from_any("s3://bucket/dir/c.ome.zarr")
    assert len({remote, Source.from_any("s3://bucket/dir/c.ome.zarr", {"anon": True})}) == 1
    from upath import UPath

    up = Source.from_any(UPath("memory://x/y.zarr"))
    assert up.protocol == "memory" and up.name == "y.zarr"
    with pytest.raises(TypeError):
        Source.from_any(3)


def test_array_reader_indexing_matches_numpy() -> None:
    data = np.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)
    reader = NumpyArrayReader("r", data, (1, 1, 2, 5, 6))
    for key in [
        (1, slice(None), slice(1, 3)),
        (slice(None), 2, Ellipsis, slice(None, None, 2)),
        (-1, -1, -1, -1, -1),
        (slice(None, None, -1),),
        (0, 0, slice(3, 1)),
    ]:
        assert np.array_equal(reader[key], data[key]), key
    with pytest.raises(IndexError):
        reader[5]
    read_stats.reset()
    reader[0, 0, 0]
    assert read_stats.snapshot() == (1, 5 * 6 * data.itemsize)
    assert split_index((0,), (3, 3, 3, 3, 3))[1] == (
        0,
        slice(None),
        slice(None),
        slice(None),
        slice(None),
    )


def test_array_reader_drops_handle_when_pickled() -> None:
    reader = NumpyArrayReader("r", np.zeros((1, 1, 1, 2, 2)), (1, 1, 1, 2, 2))
    reader[0]
    assert reader._handle is not None
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._handle is None and clone[0].shape == (1, 1, 2, 2)
