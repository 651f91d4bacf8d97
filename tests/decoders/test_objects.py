"""tlcore's decoder on object storage: a remote OME-Zarr array's chunk objects fetched in one
concurrent batch through the plugin's store and decoded by :mod:`tlcore.decoders.zarrfast`
(the same pixels as zarr, the same errors), and a chunk that a later sample also needs kept
decoded for it (:meth:`tlcore.io.prefetch.AheadCache.keep_decoded`). Against the loopback S3
server (moto) behind a counting relay."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tlcore
from tlcore.decoders import zarrfast
from tlcore.io import prefetch as ahead
from tlcore.io.relay import Relay
from tlcore.lazy.compute import find_region

SHAPE, CHUNKS = (3, 1, 8, 64, 64), (1, 1, 8, 32, 32)


@pytest.fixture
def remote(
    s3_server: dict[str, Any], synthetic_store: Callable[..., Path], s3_new_bucket: str
) -> tuple[str, Path]:
    import s3fs

    local = synthetic_store(shape=SHAPE, chunks=CHUNKS)
    s3fs.S3FileSystem(**s3_server).put(str(local), f"{s3_new_bucket}/m.ome.zarr", recursive=True)
    return f"s3://{s3_new_bucket}/m.ome.zarr", local


@pytest.fixture
def no_cache() -> Iterator[None]:
    ahead.uninstall()
    yield
    ahead.uninstall()


def _put(s3_server: dict[str, Any], url: str, data: bytes | None) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    if data is None:
        fs.rm(url)
    else:
        fs.pipe(url, data)


def test_a_remote_array_is_decoded_by_tlcore_with_zarrs_pixels(
    s3_server: dict[str, Any], remote: tuple[str, Path], relay: Relay, no_cache: None
) -> None:
    url, local = remote
    image = tlcore.open_lazy(url, storage_options=relay.options(s3_server))
    expected = tlcore.open_lazy(local).data
    rng = np.random.default_rng(5)
    for _ in range(6):
        t = int(rng.integers(SHAPE[0]))
        y0, x0 = (int(v) for v in rng.integers(0, 50, 2))
        y1, x1 = y0 + int(rng.integers(1, 64 - y0)), x0 + int(rng.integers(1, 64 - x0))
        want = expected[t, :, :, y0:y1, x0:x1].compute()
        zarrfast.stats.reset()
        before = relay.snapshot().get("GET", 0)
        crop = image.data[t, :, :, y0:y1, x0:x1].compute()
        rows, cols = range(y0 // 32, (y1 - 1) // 32 + 1), range(x0 // 32, (x1 - 1) // 32 + 1)
        touched = len(rows) * len(cols)
        assert np.array_equal(crop, want)
        # Decoded here (zarr's own read leaves these counters alone), one GET per chunk.
        assert zarrfast.stats.snapshot()["chunks"] == touched
        assert relay.snapshot().get("GET", 0) - before == touched


def test_a_damaged_object_is_named_and_a_missing_one_is_the_fill_value(
    s3_server: dict[str, Any], remote: tuple[str, Path], no_cache: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    url, _ = remote
    damaged, gone = f"{url}/0/c/1/0/0/0/1", f"{url}/0/c/2/0/0/1/1"
    _put(s3_server, damaged, b"\x28\xb5\x2f\xfd not zstd at all")
    _put(s3_server, gone, None)
    image = tlcore.open_lazy(url, storage_options=s3_server)
    with pytest.raises(zarrfast.ChunkReadError) as info:
        image.data[1, :, :, :8, 40:48].compute()
    assert damaged in str(info.value) and "chunk (1, 0, 0, 0, 1)" in str(info.value)
    assert "object" in str(info.value)
    zarrfast.stats.reset()
    ours = image.data[2].compute()
    assert zarrfast.stats.snapshot()["missing"] == 1
    monkeypatch.setenv("TLCORE_DECODER", "zarr")  # zarr's own read, for the expected pixels
    theirs = tlcore.open_lazy(url, storage_options=s3_server).data[2].compute()
    assert np.array_equal(ours, theirs)
    assert (ours[0, 0, 32:, 32:] == 0).all()  # the missing chunk: the fill value


def test_a_chunk_two_planned_samples_share_is_fetched_and_decoded_once(
    s3_server: dict[str, Any], remote: tuple[str, Path], relay: Relay, no_cache: None
) -> None:
    url, local = remote
    image = tlcore.open_lazy(url, storage_options=relay.options(s3_server))
    expected = tlcore.open_lazy(local).data
    first = (1, 0, slice(0, 8), slice(4, 20), slice(4, 20))  # chunk (1, 0, 0, 0, 0)
    second = (1, 0, slice(0, 8), slice(10, 40), slice(2, 12))  # that chunk and (.., 1, 0)
    cache = ahead.install(64 * 2**20)
    lane = 77
    for until, box in enumerate((first, second), 1):  # what the planner does per sample
        read = find_region(image.data[box])
        assert read is not None
        read.reader.prefetch(read.regions, until=until, lane=lane)
    gets = relay.snapshot().get("GET", 0)
    assert len(cache) == 2  # the shared chunk once
    zarrfast.stats.reset()
    cache.begin(1, lane)
    a = image.data[first].compute()
    cache.release(1, lane)
    cache.begin(2, lane)
    b = image.data[second].compute()
    cache.release(2, lane)
    counts = zarrfast.stats.snapshot()
    assert np.array_equal(a, expected[first].compute())
    assert np.array_equal(b, expected[second].compute())
    assert relay.snapshot().get("GET", 0) == gets  # both reads served by the cache
    assert counts["chunks"] == 2 and counts["reused"] == 1, counts  # 2 decodes for 3 reads
    assert cache.stats.kept_decoded == 1 and cache.stats.decoded_hits == 1
    assert len(cache) == 0 and cache.used == 0


@pytest.mark.parametrize(
    ("zarr_format", "codec"), [(3, "blosc"), (3, "gzip"), (3, None), (2, "zlib"), (2, "blosc")]
)
def test_every_supported_codec_reads_from_object_storage_as_zarr_does(
    s3_server: dict[str, Any], s3_new_bucket: str, tmp_path: Path, zarr_format: int,
    codec: str | None,
) -> None:  # fmt: skip
    import numcodecs
    import s3fs
    import zarr
    from zarr.codecs import BloscCodec, GzipCodec

    from tlcore import Source
    from tlcore_ome_zarr.store import open_store

    v3 = {"blosc": BloscCodec(cname="lz4"), "gzip": GzipCodec()}
    v2 = {"zlib": numcodecs.Zlib(), "blosc": numcodecs.Blosc(cname="lz4")}
    compressors: Any = (v3 if zarr_format == 3 else v2).get(codec or "") or None
    data = np.random.default_rng(2).integers(0, 900, (5, 40, 50)).astype("<u2")
    local = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(2, 16, 32),
                              dtype=data.dtype, zarr_format=zarr_format,  # type: ignore[arg-type]
                              compressors=compressors, fill_value=7)  # fmt: skip
    local[:] = data
    local[4] = 7  # chunks of the fill value only: zarr may leave them unwritten
    s3fs.S3FileSystem(**s3_server).put(str(tmp_path / "a.zarr"), f"{s3_new_bucket}/a.zarr",
                                       recursive=True)  # fmt: skip
    url = f"s3://{s3_new_bucket}/a.zarr"
    remote = zarr.open_array(store=open_store(Source.from_any(url, s3_server)), mode="r")
    fast = zarrfast.open_array(remote)
    assert fast is not None, zarrfast.unsupported_reason(remote)
    for key in [np.s_[:], np.s_[1:4, 3:37, 5:49], np.s_[4, :, 30:], np.s_[2, 17, ::3]]:
        assert np.array_equal(fast[key], local[key]), key


def test_a_sharded_array_on_object_storage_is_left_to_zarr(
    s3_server: dict[str, Any], synthetic_store: Callable[..., Path], s3_new_bucket: str
) -> None:
    import s3fs

    local = synthetic_store(shape=(2, 1, 4, 64, 64), chunks=(1, 1, 4, 16, 16),
                            shards=(1, 1, 4, 32, 32))  # fmt: skip
    s3fs.S3FileSystem(**s3_server).put(str(local), f"{s3_new_bucket}/s.ome.zarr", recursive=True)
    image = tlcore.open_lazy(f"s3://{s3_new_bucket}/s.ome.zarr", storage_options=s3_server)
    zarrfast.stats.reset()
    crop = image.data[1, :, 1:3, 10:40, 5:60].compute()
    assert zarrfast.stats.snapshot()["chunks"] == 0  # zarr read it
    assert np.array_equal(crop, tlcore.open_lazy(local).data[1, :, 1:3, 10:40, 5:60].compute())
