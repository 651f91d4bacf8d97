"""Cloud paths: an OME-Zarr store on a real S3-protocol server (moto, loopback).

The rest of the cloud behaviour (local copies, manifests, workers, faults) is in
test_cloud_remote.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import tlcore


@pytest.fixture
def s3_store(
    s3_server: dict[str, Any], synthetic_store: Callable[..., Path], s3_new_bucket: str
) -> str:
    import s3fs

    bucket = s3_new_bucket
    fs = s3fs.S3FileSystem(**s3_server)
    local = synthetic_store(shape=(3, 2, 4, 64, 64), chunks=(1, 1, 2, 32, 32), n_levels=2)
    fs.put(str(local), f"{bucket}/data/movie.ome.zarr", recursive=True)
    return f"s3://{bucket}/data/movie.ome.zarr"


def test_open_lazy_from_s3(s3_server: dict[str, Any], s3_store: str, tmp_path: Path) -> None:
    image = tlcore.open_lazy(s3_store, storage_options=s3_server)
    assert image.reader == "ome-zarr" and image.shape == (3, 2, 4, 64, 64)
    assert image.uri == s3_store
    assert len(tlcore.levels(s3_store, storage_options=s3_server)) == 2
    crop = image.data[1, :, 1:3, 10:40, 20:60].compute()
    direct = zarr.open_array(
        store=zarr.storage.FsspecStore.from_url(
            s3_store, storage_options=s3_server, read_only=True
        ),
        path="0",
        mode="r",
    )
    assert np.array_equal(crop, direct[1, :, 1:3, 10:40, 20:60])


def test_upath_carries_its_storage_options(s3_server: dict[str, Any], s3_store: str) -> None:
    from upath import UPath

    path = UPath(s3_store, **s3_server)
    assert tlcore.list_scenes(path) == ["synthetic.ome"]
    assert tlcore.time_axis(path).interval == pytest.approx(2.0)


def test_missing_remote_store_is_a_clear_error(s3_server: dict[str, Any], s3_store: str) -> None:
    missing = s3_store.replace("movie", "nothing-here")
    with pytest.raises(tlcore.NoReaderError) as info:
        tlcore.open_lazy(missing, storage_options=s3_server)
    assert missing in str(info.value) and "not a zarr store" in str(info.value)


def test_a_local_only_reader_gets_a_local_copy_of_a_remote_file(
    s3_server: dict[str, Any], s3_new_bucket: str, testdata: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tlcore_nd2", reason="the tlcore-nd2 plugin is not installed")
    import s3fs

    local = testdata / "nd2" / "example-timelapse.nd2"
    s3fs.S3FileSystem(**s3_server).put_file(str(local), f"{s3_new_bucket}/movie.nd2")
    url = f"s3://{s3_new_bucket}/movie.nd2"
    options = {**s3_server, "tlcore_cache_dir": str(tmp_path / "cache")}
    image = tlcore.open_lazy(url, storage_options=options)
    assert image.reader == "nd2" and image.uri == url  # the image keeps its remote name
    expected = tlcore.open_lazy(local).data[5:7].compute()
    assert np.array_equal(image.data[5:7].compute(), expected)
    copies = [p for p in (tmp_path / "cache").rglob("movie.nd2")]
    assert len(copies) == 1 and copies[0].stat().st_size == local.stat().st_size
