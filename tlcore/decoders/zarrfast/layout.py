"""What a chunk file of a supported array holds, decided from the array's metadata alone.

:func:`layout` turns an open ``zarr.Array`` into a :class:`Layout` (folder, shape, chunking,
data type and byte order, memory order, codec, fill value, chunk key encoding), or raises
:class:`Unsupported` with the reason: anything this package does not decode exactly as zarr
does is refused, and the caller reads through zarr.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["CODECS", "Layout", "ObjectSource", "ShardLayout", "Unsupported", "layout"]

#: The compressors this package decodes (None: uncompressed).
CODECS = ("zstd", "blosc", "gzip", "zlib")

_KINDS = "biufc"  # bool, signed, unsigned, float, complex


class Unsupported(Exception):
    """The array cannot be read by this package; the message says why."""


@runtime_checkable
class ObjectSource(Protocol):
    """A zarr store on object storage that hands this package the chunk objects of a read
    (the OME-Zarr plugin's remote store implements it), so that a remote array is decoded here
    as a local one is, instead of through zarr's per-chunk pipeline.

    ``uri`` names the store's root (``s3://bucket/x.ome.zarr``); an object's name is
    ``f"{uri}/{key}"``, the name :mod:`tlcore.io.prefetch` knows it by.
    """

    uri: str

    def fetch_objects(self, keys: Sequence[str]) -> list[Any]:
        """The whole objects ``keys`` (relative to the root), fetched concurrently: for each, a
        bytes-like object (uint8 numpy arrays included) or None when it does not exist (the
        fill value, as zarr reads it). Raises, naming the object, when one cannot be read
        after the store's retries."""
        ...


@dataclass(frozen=True)
class ShardLayout:
    """How the inner chunks of one shard file are found (zarr v3 ``sharding_indexed``): an
    index of ``(offset, nbytes)`` uint64 pairs, one per inner chunk in C order, at the start or
    the end of the file, optionally followed by its CRC-32C."""

    shape: tuple[int, ...]  # a shard's shape (elements): the array's chunk grid
    per_shard: tuple[int, ...]  # inner chunks per shard, per axis
    index_at_end: bool
    index_dtype: np.dtype[Any]  # uint64 of the index's byte order
    checksum: bool  # the index ends with its CRC-32C (little-endian)

    @property
    def index_nbytes(self) -> int:
        """The bytes of a shard's index as stored (the checksum included)."""
        return 16 * math.prod(self.per_shard) + 4 * self.checksum


@dataclass(frozen=True)
class Layout:
    """How one array's chunks are stored. For a sharded array ``chunks`` are the inner chunks
    (the unit of decoding, as ``zarr.Array.chunks`` says), ``shard`` says how a shard file
    holds them, and ``key`` names a shard file from the shard's coordinates."""

    store: str  # the store's root folder
    path: str  # the array's path inside the store ("" for the root)
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]  # what zarr returns
    stored: np.dtype[Any]  # the chunk's elements as stored (byte order)
    order: Literal["C", "F"]  # memory order of a chunk's elements
    codec: str | None  # one of CODECS, or None (uncompressed)
    fill: Any
    key: Callable[[tuple[int, ...]], str]
    shard: ShardLayout | None = None
    # A remote store: chunks are fetched through it (``store`` is then its uri).
    objects: ObjectSource | None = field(default=None, compare=False)

    @property
    def folder(self) -> str:
        """The array's folder on disk (on object storage: its uri)."""
        if self.objects is not None:
            return f"{self.store}/{self.path}" if self.path else self.store
        return os.path.join(self.store, self.path) if self.path else self.store

    @property
    def chunk_nbytes(self) -> int:
        """The bytes of one decoded chunk."""
        return math.prod(self.chunks) * self.stored.itemsize

    def where(self) -> str:
        """The array and store, for error messages."""
        return f"array '{self.path or '/'}' of the zarr store {self.store}"


def layout(array: Any) -> Layout:
    """The :class:`Layout` of ``array`` (an open ``zarr.Array``); raises :class:`Unsupported`."""
    try:
        import zarr
        from zarr.storage import LocalStore
    except ImportError as exc:  # pragma: no cover - zarr made the array
        raise Unsupported("zarr is not importable") from exc
    if not isinstance(array, zarr.Array):
        raise Unsupported(f"not a zarr.Array: {type(array).__name__}")
    store = array.store
    objects = store if isinstance(store, ObjectSource) else None
    # A subclass or wrapper of LocalStore may change what get() returns.
    if type(store) is not LocalStore and objects is None:
        raise Unsupported(f"store is {type(store).__name__}, not a local folder (LocalStore) "
                          "nor an object store that fetches its chunks (ObjectSource)")  # fmt: skip
    meta = array.metadata
    if len(meta.shape) == 0:
        raise Unsupported("0-d array")
    root = objects.uri.rstrip("/") if objects is not None else str(store.root)  # type: ignore[attr-defined]
    if meta.zarr_format == 2:
        found = _layout_v2(meta, root, array.path)
    elif meta.zarr_format == 3:
        found = _layout_v3(meta, root, array.path)
    else:  # pragma: no cover
        raise Unsupported(f"zarr format {meta.zarr_format}")
    if objects is None:
        return found
    if found.shard is not None:
        # Prefetch and the shard index's byte ranges are not wired for remote shards yet.
        raise Unsupported("a sharded array on object storage (zarr reads it)")
    return dataclasses.replace(found, objects=objects)


def _dtype(zdtype: Any) -> np.dtype[Any]:
    dtype: np.dtype[Any] = np.dtype(zdtype.to_native_dtype())
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise Unsupported(f"data type {dtype} (only bool, integer, float and complex)")
    return dtype


def _fill(meta: Any, zdtype: Any, dtype: np.dtype[Any]) -> Any:
    # zarr 3 (codec_pipeline.fill_value_or_default): a v2 "fill_value": null reads as the
    # data type's default scalar (zero).
    fill = meta.fill_value
    if fill is None:
        fill = zdtype.default_scalar()
    return np.asarray(fill, dtype=dtype)


def _layout_v2(meta: Any, store: str, path: str) -> Layout:
    import numcodecs  # type: ignore[import-untyped]

    dtype = _dtype(meta.dtype)
    if meta.filters:
        names = ", ".join(type(f).__name__ for f in meta.filters)
        raise Unsupported(f"v2 filters ({names})")
    compressor = meta.compressor
    known: dict[type, str] = {
        numcodecs.Zstd: "zstd",
        numcodecs.Blosc: "blosc",
        numcodecs.GZip: "gzip",
        numcodecs.Zlib: "zlib",
    }
    if compressor is not None and type(compressor) not in known:
        raise Unsupported(f"v2 compressor {type(compressor).__name__}")
    codec = known[type(compressor)] if compressor is not None else None
    if meta.order not in ("C", "F"):
        raise Unsupported(f"v2 order {meta.order!r}")  # pragma: no cover - zarr validates
    return Layout(
        store,
        path,
        tuple(meta.shape),
        tuple(meta.chunks),
        dtype,
        dtype,
        meta.order,
        codec,
        _fill(meta, meta.dtype, dtype),
        meta.encode_chunk_key,
    )


def _layout_v3(meta: Any, store: str, path: str) -> Layout:
    from zarr.codecs import ShardingCodec
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding, V2ChunkKeyEncoding

    if type(meta.chunk_grid) is not RegularChunkGrid:
        raise Unsupported(f"chunk grid {type(meta.chunk_grid).__name__}")
    if getattr(meta, "storage_transformers", ()):
        raise Unsupported("storage transformers")
    encoding = meta.chunk_key_encoding
    if type(encoding) not in (DefaultChunkKeyEncoding, V2ChunkKeyEncoding):
        raise Unsupported(f"chunk key encoding {type(encoding).__name__}")
    dtype = _dtype(meta.data_type)
    ndim = len(meta.shape)
    codecs = list(meta.codecs)
    grid = tuple(meta.chunk_grid.chunk_shape)
    chunks, shard = grid, None
    if len(codecs) == 1 and type(codecs[0]) is ShardingCodec:
        sharding = codecs[0]
        chunks = tuple(sharding.chunk_shape)
        if len(chunks) != ndim or any(s % c for s, c in zip(grid, chunks)):
            raise Unsupported(f"inner chunks {chunks} do not divide the shards {grid}")
        shard = _shard_layout(sharding, grid, chunks)
        codecs = list(sharding.codecs)
    endian, codec = _chain(codecs, ndim)
    stored = dtype
    if dtype.itemsize > 1 and endian is not None:
        stored = dtype.newbyteorder("<" if endian.value == "little" else ">")
    return Layout(
        store,
        path,
        tuple(meta.shape),
        chunks,
        dtype,
        stored,
        "C",
        codec,
        _fill(meta, meta.data_type, dtype),
        meta.encode_chunk_key,
        shard,
    )


def _chain(codecs: list[Any], ndim: int) -> tuple[Any, str | None]:
    """The byte order and the compressor of a chunk's codecs (an identity ``transpose``,
    ``bytes``, at most one compressor); :class:`Unsupported` for anything else (sharding
    inside sharding included)."""
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, TransposeCodec, ZstdCodec

    names = ", ".join(type(c).__name__ for c in codecs)
    if codecs and type(codecs[0]) is TransposeCodec:
        if tuple(codecs[0].order) != tuple(range(ndim)):
            raise Unsupported(f"transpose codec with order {tuple(codecs[0].order)}")
        codecs = codecs[1:]  # the identity: nothing to undo
    if not codecs or type(codecs[0]) is not BytesCodec:
        raise Unsupported(f"codecs [{names}] (expected bytes, then one compressor)")
    rest = codecs[1:]
    known: dict[type, str] = {ZstdCodec: "zstd", BloscCodec: "blosc", GzipCodec: "gzip"}
    if len(rest) > 1 or (rest and type(rest[0]) not in known):
        raise Unsupported(f"codecs [{names}] (expected bytes, then one of zstd, blosc, gzip)")
    return codecs[0].endian, (known[type(rest[0])] if rest else None)


def _shard_layout(sharding: Any, grid: tuple[int, ...], chunks: tuple[int, ...]) -> ShardLayout:
    from zarr.codecs import BytesCodec, Crc32cCodec
    from zarr.codecs.sharding import ShardingCodecIndexLocation

    index = list(sharding.index_codecs)
    names = ", ".join(type(c).__name__ for c in index)
    checksum = len(index) == 2 and type(index[1]) is Crc32cCodec
    if not index or type(index[0]) is not BytesCodec or len(index) != 1 + checksum:
        raise Unsupported(f"shard index codecs [{names}] (expected bytes, then crc32c or none)")
    endian = index[0].endian
    index_dtype = np.dtype("<u8" if endian is None or endian.value == "little" else ">u8")
    return ShardLayout(
        grid,
        tuple(s // c for s, c in zip(grid, chunks)),
        sharding.index_location == ShardingCodecIndexLocation.end,
        index_dtype,
        checksum,
    )
