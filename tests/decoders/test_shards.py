"""tlcore's zarr decoder on sharded arrays (zarr v3 ``sharding_indexed``): the same pixels as
zarr, only the inner chunks a region touches read (their byte ranges, plus each touched
shard's index) and decoded, and damaged shards raising :class:`ChunkReadError` naming the
shard file, where zarr raises too (and in the few places where zarr returns the fill value or
garbage for a damaged shard, see the module docstring of ``tlcore.decoders.zarrfast.shards``).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, ShardingCodec, ZstdCodec

from tlcore import zarrfast
from tlcore.testing import iowatch

SHAPE = (3, 37, 45)  # edge shards and edge inner chunks on every axis
SHARDS = (2, 16, 24)
CHUNKS = (1, 8, 8)
INNER: dict[str, Any] = {
    "zstd": ZstdCodec(level=3),
    "blosc": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "gzip": GzipCodec(level=5),
    "none": None,
}


def _data(shape: tuple[int, ...], dtype: Any = "uint16", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(shape) * 30 + np.arange(shape[-1]) % 9 + 100
    return base.astype(dtype)


def _sharded(
    path: Path,
    *,
    compressor: Any = INNER["zstd"],
    index_location: str = "end",
    checksum: bool = True,
    dtype: Any = "uint16",
    endian: str = "little",
    fill: Any = 0,
    shape: tuple[int, ...] = SHAPE,
    shards: tuple[int, ...] = SHARDS,
    chunks: tuple[int, ...] = CHUNKS,
) -> tuple[zarr.Array[Any], np.ndarray]:
    codecs: list[Any] = [BytesCodec(endian=endian)]
    if compressor is not None:
        codecs.append(compressor)
    sharding = ShardingCodec(
        chunk_shape=chunks,
        codecs=codecs,
        index_codecs=[BytesCodec(), Crc32cCodec()] if checksum else [BytesCodec()],
        index_location=index_location,
    )
    array = zarr.create_array(
        str(path), shape=shape, chunks=shards, dtype=dtype, fill_value=fill,
        serializer=sharding, compressors=None, zarr_format=3,
    )  # fmt: skip
    data = _data(shape, dtype)
    array[...] = data
    return zarr.open_array(str(path), mode="r"), data


def _regions(shape: tuple[int, ...], n: int, seed: int = 1) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(seed)
    out = [tuple(slice(0, s) for s in shape)]
    for _ in range(n):
        out.append(tuple(slice(int(a), int(b) + 1)
                         for a, b in (sorted(rng.integers(0, s, 2)) for s in shape)))  # fmt: skip
    return out


def _shard_file(array: zarr.Array[Any], coords: tuple[int, ...]) -> Path:
    return Path(str(array.store.root)) / array.path / array.metadata.encode_chunk_key(coords)


def _index(path: Path, per_shard: tuple[int, ...], at_end: bool = True) -> np.ndarray:
    n = 16 * int(np.prod(per_shard))
    raw = path.read_bytes()
    body = raw[len(raw) - n - 4 : len(raw) - 4] if at_end else raw[:n]
    return np.frombuffer(body, "<u8").reshape((*per_shard, 2))


# -- the same pixels -------------------------------------------------------------------------
@pytest.mark.parametrize("codec", sorted(INNER))
@pytest.mark.parametrize(("index_location", "checksum"), [("end", True), ("start", False)])
def test_sharded_arrays_read_as_in_zarr(
    tmp_path: Path, codec: str, index_location: str, checksum: bool
) -> None:
    array, data = _sharded(tmp_path / "s.zarr", compressor=INNER[codec],
                           index_location=index_location, checksum=checksum)  # fmt: skip
    fast = zarrfast.open_array(array)
    assert fast is not None, zarrfast.unsupported_reason(array)
    assert fast.chunks == CHUNKS and fast.layout.shard is not None
    for threads, partial in ((1, True), (3, False)):
        for key in _regions(SHAPE, 12):
            got = fast.read(key, partial=partial) if threads == 1 else fast[key]
            want = array[key]
            assert got.dtype == want.dtype and np.array_equal(got, want), key
            assert np.array_equal(got, data[key])


@pytest.mark.parametrize("dtype", ["<u2", ">i4", "<f8", "u1", "bool"])
def test_sharded_dtypes_and_byte_orders(tmp_path: Path, dtype: str) -> None:
    endian = "big" if dtype.startswith(">") else "little"
    array, _ = _sharded(tmp_path / "s.zarr", dtype=np.dtype(dtype).newbyteorder("="),
                        endian=endian, fill=1)  # fmt: skip
    fast = zarrfast.open_array(array)
    assert fast is not None
    for key in _regions(SHAPE, 5):
        got, want = fast[key], array[key]
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_missing_shards_and_empty_inner_chunks_read_as_the_fill_value(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    array = zarr.create_array(
        str(path), shape=SHAPE, chunks=SHARDS, shards=None, dtype="uint16", fill_value=7,
        serializer=ShardingCodec(chunk_shape=CHUNKS, codecs=[BytesCodec(), ZstdCodec()]),
        compressors=None, zarr_format=3,
    )  # fmt: skip
    data = _data(SHAPE)
    data[0, :8, :8] = 7  # one inner chunk all fill value: zarr leaves it out of its shard
    data[2, 32:, 24:] = 7  # the last shard all fill value: zarr writes no file
    array[...] = data
    array = zarr.open_array(str(path), mode="r")
    assert not _shard_file(array, (1, 2, 1)).exists()
    assert (_index(_shard_file(array, (0, 0, 0)), (2, 2, 3))[0, 0, 0] == 2**64 - 1).all()
    fast = zarrfast.open_array(array)
    assert fast is not None
    zarrfast.stats.reset()
    for key in _regions(SHAPE, 10):
        assert np.array_equal(fast[key], array[key]), key
    assert zarrfast.stats.snapshot()["missing"] > 0
    # A folder where the shard file would be: no shard, as zarr's LocalStore reads it.
    _shard_file(array, (1, 2, 1)).mkdir(parents=True)
    assert np.array_equal(fast[2, 32:, 24:], array[2, 32:, 24:])


# -- only the touched inner chunks ----------------------------------------------------------
def test_a_crop_reads_and_decodes_only_the_inner_chunks_it_touches(tmp_path: Path) -> None:
    shape, shards, chunks = (2, 64, 256, 256), (1, 64, 256, 256), (1, 16, 64, 64)
    array, _ = _sharded(tmp_path / "s.zarr", shape=shape, shards=shards, chunks=chunks)
    fast = zarrfast.open_array(array, threads=2)
    assert fast is not None
    shard_file = _shard_file(array, (1, 0, 0, 0))
    index = _index(shard_file, (1, 4, 4, 4))
    key = (1, slice(10, 30), slice(60, 70), slice(100, 140))  # 2 x 2 x 2 inner chunks
    touched = list(itertools.product([0, 1], [0, 1], [1, 2]))
    want_read = 16 * 64 + 4 + sum(int(index[(0, *c)][1]) for c in touched)
    fast[key]  # warm: imports, threads
    zarrfast.stats.reset()
    with iowatch.watch(tmp_path) as seen:
        got = fast[key]
    assert np.array_equal(got, array[key])
    stats = zarrfast.stats.snapshot()
    assert stats["chunks"] == len(touched)
    assert stats["decoded_bytes"] == len(touched) * 16 * 64 * 64 * 2
    assert stats["read_bytes"] == want_read  # the index and the 8 inner chunks' byte ranges
    assert want_read < shard_file.stat().st_size / 6
    # The process's own count of bytes read (page cache included) agrees.
    assert seen.bytes_read is not None and seen.bytes_read < want_read + 64 * 1024
    assert not [a for a in seen.accesses if a.writes]


def test_uncompressed_inner_chunks_are_read_in_part(tmp_path: Path) -> None:
    array, _ = _sharded(tmp_path / "s.zarr", compressor=None, shape=(1, 64, 64),
                        shards=(1, 64, 64), chunks=(1, 32, 32))  # fmt: skip
    fast = zarrfast.open_array(array, partial=True)
    assert fast is not None
    zarrfast.stats.reset()
    assert np.array_equal(fast[0, 3:5, 1:40], array[0, 3:5, 1:40])
    stats = zarrfast.stats.snapshot()
    assert stats["chunks"] == 2 and stats["partial"] == 2
    assert stats["read_bytes"] < 16 * 4 + 4 + 2 * 2 * 32 * 2  # two rows of two inner chunks


# -- damaged shards ---------------------------------------------------------------------------
def _raises_naming(fast: zarrfast.FastZarrArray, key: Any, file: Path, *words: str) -> None:
    with pytest.raises(zarrfast.ChunkReadError) as info:
        fast[key]
    text = str(info.value)
    assert info.value.path == str(file) and str(file) in text and "shard" in text
    for word in words:
        assert word in text, text


@pytest.mark.parametrize("how", ["index-flip", "chunk-flip", "truncate", "empty", "tiny"])
def test_a_damaged_shard_raises_naming_the_file_where_zarr_raises(tmp_path: Path, how: str) -> None:
    array, _ = _sharded(tmp_path / "s.zarr")
    file = _shard_file(array, (0, 0, 0))
    raw = bytearray(file.read_bytes())
    index = _index(file, (2, 2, 3))
    if how == "index-flip":
        raw[-10] ^= 0x10
    elif how == "chunk-flip":
        offset, length = (int(v) for v in index[0, 0, 0])
        raw[offset + length // 2] ^= 0xFF
    elif how == "truncate":
        raw = raw[: len(raw) // 2]
    elif how == "empty":
        raw = bytearray()
    else:
        raw = raw[:10]
    file.write_bytes(bytes(raw))
    fast = zarrfast.open_array(zarr.open_array(str(tmp_path / "s.zarr"), mode="r"))
    assert fast is not None
    key = (0, slice(0, 5), slice(0, 5))  # one inner chunk of the damaged shard
    with pytest.raises(Exception):  # noqa: B017  (zarr raises its codec's own types)
        array[key]
    _raises_naming(fast, key, file)
    # The other shards still read.
    assert np.array_equal(fast[2, 20:, 30:], array[2, 20:, 30:])


def test_an_index_pointing_past_the_file_raises(tmp_path: Path) -> None:
    """Without a checksum a damaged index is only caught by its entries: one that points past
    the end of the file raises (zarr would hand the short bytes to the decoder)."""
    array, _ = _sharded(tmp_path / "s.zarr", checksum=False, index_location="start")
    file = _shard_file(array, (0, 0, 0))
    raw = bytearray(file.read_bytes())
    raw[0:8] = (len(raw) - 5).to_bytes(8, "little")  # inner chunk (0, 0, 0)'s offset
    file.write_bytes(bytes(raw))
    fast = zarrfast.open_array(zarr.open_array(str(tmp_path / "s.zarr"), mode="r"))
    assert fast is not None
    _raises_naming(fast, (0, 0, 0), file, "inner chunk (0, 0, 0)", "truncated")
    assert np.array_equal(fast[0, 8:16, 8:16], array[0, 8:16, 8:16])  # its neighbours read


def test_refuses_nested_sharding_and_other_index_codecs(tmp_path: Path) -> None:
    inner = ShardingCodec(chunk_shape=(1, 4, 4), codecs=[BytesCodec()])
    nested = zarr.create_array(
        str(tmp_path / "n.zarr"), shape=SHAPE, chunks=(2, 16, 16), dtype="uint16",
        serializer=ShardingCodec(chunk_shape=(1, 8, 8), codecs=[inner]), compressors=None,
    )  # fmt: skip
    assert zarrfast.open_array(nested) is None
    assert "Sharding" in (zarrfast.unsupported_reason(nested) or "")
    inner_codecs = [BytesCodec(), ZstdCodec(), Crc32cCodec()]
    crc = zarr.create_array(
        str(tmp_path / "c.zarr"), shape=SHAPE, chunks=(2, 16, 16), dtype="uint16",
        serializer=ShardingCodec(chunk_shape=(1, 8, 8), codecs=inner_codecs), compressors=None,
    )  # fmt: skip
    crc_inner = zarrfast.unsupported_reason(crc)
    assert crc_inner is not None and "Crc32c" in crc_inner


def test_the_ome_zarr_reader_reads_sharded_stores_through_tlcores_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlcore.lazy.compute import compute
    from tlcore.readers.api import open_lazy
    from tlcore.testing.synthetic import write_ome_zarr

    monkeypatch.delenv("TLCORE_DECODER", raising=False)
    path = write_ome_zarr(tmp_path / "s.ome.zarr", (1, 2, 16, 128, 128), (1, 1, 8, 32, 32),
                          shards=(1, 1, 16, 64, 64))  # fmt: skip
    native = zarr.open_array(str(path / "0"), mode="r")
    image = open_lazy(path)
    zarrfast.stats.reset()
    key = (0, 1, slice(3, 12), slice(40, 90), slice(10, 20))
    assert np.array_equal(compute(image.data[key]), native[key])
    assert zarrfast.stats.snapshot()["chunks"] == 2 * 2 * 1  # z, y, x inner chunks touched


# -- random sharded arrays, intact and damaged, against zarr ----------------------------------
def _random_sharded(path: Path, rng: np.random.Generator) -> tuple[zarr.Array[Any], bool]:
    """A random sharded array at ``path``, some shard files damaged; whether any is."""
    ndim = int(rng.integers(1, 5))
    chunks = tuple(int(rng.integers(1, 6)) for _ in range(ndim))
    shards = tuple(c * int(rng.integers(1, 4)) for c in chunks)
    shape = tuple(int(rng.integers(1, 3 * s + 2)) for s in shards)
    dtype = np.dtype(str(rng.choice(["<u2", ">i2", "<f4", ">f8", "u1", "<i8"])))
    compressor = INNER[str(rng.choice(sorted(INNER)))]
    _sharded(
        path, compressor=compressor, index_location=str(rng.choice(["start", "end"])),
        checksum=bool(rng.integers(2)), dtype=dtype.newbyteorder("="),
        endian="big" if dtype.byteorder == ">" else "little", fill=int(rng.integers(0, 3)),
        shape=shape, shards=shards, chunks=chunks,
    )  # fmt: skip
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "zarr.json")
    damaged = False
    if files and rng.random() < 0.6:
        file = files[int(rng.integers(len(files)))]
        raw = bytearray(file.read_bytes())
        how = str(rng.choice(["flip", "truncate", "empty", "append", "unlink"]))
        if how == "flip" and raw:
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        elif how == "truncate":
            raw = raw[: int(rng.integers(len(raw) + 1))]
        elif how == "empty":
            raw = bytearray()
        elif how == "append":
            raw += b"\0junk"  # the index at the end is no longer where it should be
        if how == "unlink":
            file.unlink()  # a missing shard: the fill value, not damage
        else:
            file.write_bytes(bytes(raw))
            damaged = True
    return zarr.open_array(str(path), mode="r"), damaged


def test_random_sharded_arrays_follow_zarr(tmp_path: Path) -> None:
    """Intact: zarr's bytes. Damaged: an error wherever zarr raises; where zarr returns data
    from a damaged shard (a truncated blosc inner chunk c-blosc reads past, an empty file read
    whole), tlcore returns the same bytes or raises :class:`ChunkReadError` naming the file."""
    rng = np.random.default_rng(5)
    counts = {"same": 0, "both raised": 0, "tlcore raised, zarr did not": 0}
    for n in range(20):
        array, damaged = _random_sharded(tmp_path / f"a{n}.zarr", rng)
        fast = zarrfast.open_array(array, threads=int(rng.integers(1, 4)))
        assert fast is not None, zarrfast.unsupported_reason(array)
        for key in _regions(array.shape, 3, seed=n):
            try:
                want: Any = array[key]
            except Exception as exc:  # zarr raises its codecs' own types
                want = exc
            try:
                got: Any = fast[key]
            except zarrfast.ChunkReadError as exc:
                assert damaged, f"raised on an intact array: {exc}"
                assert str(array.store.root) in str(exc) and Path(exc.path).exists()
                key_name = "both raised" if isinstance(want, Exception) else (
                    "tlcore raised, zarr did not")  # fmt: skip
                counts[key_name] += 1
                continue
            assert not isinstance(want, Exception), f"zarr raised {want!r}, tlcore did not"
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (n, key)
            counts["same"] += 1
    assert counts["same"] and counts["both raised"], counts


# -- memory -----------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
def test_a_read_holds_at_most_one_chunk_per_thread_and_keeps_nothing(
    tmp_path: Path, threads: int
) -> None:
    """The decoder's own memory (tracemalloc sees numpy's buffers and the bytes read): the output,
    plus per decoding thread one inner chunk's stored bytes and its decoded bytes; nothing (no
    index, no buffer) is kept after the read."""
    import gc
    import tracemalloc

    shape, chunks = (1, 64, 256, 256), (1, 16, 64, 64)  # 128 KiB inner chunks, 64 per shard
    array, _ = _sharded(tmp_path / "s.zarr", shape=shape, shards=shape, chunks=chunks)
    fast = zarrfast.open_array(array, threads=threads)
    assert fast is not None
    key = (0, slice(0, 64), slice(0, 256), slice(0, 256))  # every inner chunk
    chunk = 16 * 64 * 64 * 2
    fast[key]  # warm: imports, threads
    gc.collect()
    tracemalloc.start()
    try:
        got = fast[key]
        current, peak = tracemalloc.get_traced_memory()
        del got
        gc.collect()
        left, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = 64 * 256 * 256 * 2
    assert peak <= out + threads * 2 * chunk + 64 * 1024, (peak - out) / chunk
    assert current < out + 64 * 1024 and left < 64 * 1024
