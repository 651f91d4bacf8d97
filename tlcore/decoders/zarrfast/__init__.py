"""Region reads of local zarr arrays, decoded on a few plain threads: the same pixels as
``zarr_array[region]``, faster, and safe in a process forked after use.

zarr's own read pays, per call, an asyncio bridge, thread hops and per-chunk Python layers.
This module reads the chunk files a region touches itself (read-only ``os.open``), decodes
them with the same codec libraries zarr uses (libzstd, c-blosc and zlib, called so that they
release the GIL) on a small per-process thread pool, and copies each chunk's needed part into
one preallocated output. It also decodes less than zarr: a chunk is decoded only as far as the
region needs, in the chunk's memory order (zstd and gzip/zlib streams stop after the last
needed element, blosc decodes only the blocks that hold the needed range, an uncompressed chunk
reads only that byte range).

    fast = open_array(zarr_array)        # None when the array is not supported: use zarr
    pixels = fast[0, 3:40, 100:228]      # numpy basic indexing; equal to zarr_array[...]

Supported, decided from the array's metadata alone (anything else is refused, with the reason
from :func:`unsupported_reason`, and the caller reads through zarr):

* the store is a ``zarr.storage.LocalStore`` (a folder on this machine);
* zarr format 3: a regular chunk grid, ``default`` or ``v2`` chunk key encoding (either
  separator), no storage transformers, codecs ``bytes`` (either endianness), optionally
  preceded by an identity ``transpose``, then at most one of ``zstd``, ``blosc``, ``gzip``;
* zarr format 2: compressor ``zstd``, ``blosc``, ``gzip``, ``zlib`` or none, no filters,
  order ``C`` or ``F``, either dimension separator;
* numeric data types (bool, integers, floats, complex) of either byte order, at least one
  dimension.

Refused: sharding, ``crc32c`` and other codecs, filters, object/string/structured/datetime
data types, remote and wrapped stores.

A missing chunk file (also a directory in its place, as zarr's ``LocalStore`` treats it)
reads as the fill value, as zarr does; a v2 ``fill_value: null`` reads as zero, the data
type's default, as zarr 3 does. A chunk that cannot be decoded, or decodes to the wrong size,
raises ``ValueError`` naming the file, where zarr raises too. Before decoding part of a chunk
its headers are checked (blosc's sizes, a zstd frame's size and completeness, gzip's stored
length), so a truncated or wrong-sized chunk fails as in zarr; damage inside the part that is
not decoded goes unnoticed (``TLCORE_ZARRFAST_PARTIAL=0`` decodes everything, as zarr does),
and zstd frames that carry a checksum are always decoded whole, so it is verified.

Switches (environment, read on each call; also per :class:`FastZarrArray`):

* ``TLCORE_ZARRFAST_THREADS``: at most this many threads decode one region (the calling
  thread included; ``1`` decodes in the caller only). Default: the CPUs this process may run
  on (``os.sched_getaffinity``), never more than the chunks the region touches. In DataLoader
  workers set it so that workers x threads is about the core count.
* ``TLCORE_ZARRFAST_PARTIAL``: ``0`` decodes every touched chunk whole (as zarr does); on by
  default. Pixels are identical either way.

Fork: the pool's threads are created lazily, once per process, and the pool is dropped in a
forked child (``os.register_at_fork``, plus a pid check), so a DataLoader worker forked after
the parent read a crop starts its own threads instead of waiting on the parent's. Nothing here
holds native library state across a fork (each thread keeps its own zstd context).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import itertools
import math
import os
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tlcore.lazy import cpu
from tlcore.lazy.reader import split_index

__all__ = [
    "PARTIAL_ENV",
    "THREADS_ENV",
    "DecodeStats",
    "FastZarrArray",
    "default_threads",
    "open_array",
    "partial_enabled",
    "stats",
    "unsupported_reason",
]

THREADS_ENV = "TLCORE_ZARRFAST_THREADS"
PARTIAL_ENV = "TLCORE_ZARRFAST_PARTIAL"

#: A chunk is decoded partially only when the part to decode is at most this share of it.
#: Measured on 4 MiB zstd and blosc chunks: decoding a share s costs about s x (whole) + 5%,
#: so past ~0.93 decoding the whole chunk in one call is as cheap.
PARTIAL_MAX_SHARE = 0.9

#: Per-thread reusable buffers up to this size (decoding into fresh memory costs a page fault
#: per 4 KiB); bigger chunks get a fresh buffer each time, so an idle thread holds at most two
#: of these (decoded and encoded): memory per worker must stay near the crop, not the chunk.
_KEEP_BUFFER_BYTES = 8 * 1024 * 1024

_KINDS = "biufc"  # bool, signed, unsigned, float, complex


# -- what a chunk file holds, from metadata ---------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    folder: str  # the array's folder on disk
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype[Any]  # what zarr returns
    stored: np.dtype[Any]  # the chunk's elements as stored (byte order)
    order: Literal["C", "F"]  # memory order of a chunk's elements
    codec: str | None  # zstd, blosc, gzip, zlib, or None (uncompressed)
    checksum: bool  # zstd frames carry a checksum zarr verifies: decode those whole
    fill: Any
    key: Callable[[tuple[int, ...]], str]

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunks) * self.stored.itemsize


class _Unsupported(Exception):
    pass


def unsupported_reason(array: Any) -> str | None:
    """Why :func:`open_array` refuses ``array`` (a ``zarr.Array``), or None when it is
    supported."""
    try:
        _layout(array)
    except _Unsupported as exc:
        return str(exc)
    return None


def open_array(
    array: Any, *, threads: int | None = None, partial: bool | None = None
) -> FastZarrArray | None:
    """A :class:`FastZarrArray` over ``array`` (an open ``zarr.Array``), or None when its
    store or metadata is not supported (see the module docstring): then read through zarr.

    ``threads`` and ``partial`` override ``TLCORE_ZARRFAST_THREADS`` and
    ``TLCORE_ZARRFAST_PARTIAL`` for this array."""
    try:
        layout = _layout(array)
    except _Unsupported:
        return None
    return FastZarrArray(layout, threads=threads, partial=partial)


def _layout(array: Any) -> _Layout:
    try:
        import zarr
        from zarr.storage import LocalStore
    except ImportError as exc:  # pragma: no cover - zarr made the array
        raise _Unsupported("zarr is not importable") from exc
    if not isinstance(array, zarr.Array):
        raise _Unsupported(f"not a zarr.Array: {type(array).__name__}")
    store = array.store
    if type(store) is not LocalStore:  # a subclass or wrapper may change what get() returns
        raise _Unsupported(f"store is {type(store).__name__}, not a local folder (LocalStore)")
    meta = array.metadata
    if len(meta.shape) == 0:
        raise _Unsupported("0-d array")
    folder = os.path.join(str(store.root), array.path) if array.path else str(store.root)
    if meta.zarr_format == 2:
        return _layout_v2(meta, folder)
    if meta.zarr_format == 3:
        return _layout_v3(meta, folder)
    raise _Unsupported(f"zarr format {meta.zarr_format}")  # pragma: no cover


def _dtype(zdtype: Any) -> np.dtype[Any]:
    dtype: np.dtype[Any] = np.dtype(zdtype.to_native_dtype())
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _Unsupported(f"data type {dtype} (only bool, integer, float and complex)")
    return dtype


def _fill(meta: Any, zdtype: Any, dtype: np.dtype[Any]) -> Any:
    # zarr 3 (codec_pipeline.fill_value_or_default): a v2 "fill_value": null reads as the
    # data type's default scalar (zero).
    fill = meta.fill_value
    if fill is None:
        fill = zdtype.default_scalar()
    return np.asarray(fill, dtype=dtype)


def _numcodecs() -> Any:
    import numcodecs  # type: ignore[import-untyped]

    return numcodecs


def _layout_v2(meta: Any, folder: str) -> _Layout:
    numcodecs = _numcodecs()
    dtype = _dtype(meta.dtype)
    if meta.filters:
        names = ", ".join(type(f).__name__ for f in meta.filters)
        raise _Unsupported(f"v2 filters ({names})")
    compressor = meta.compressor
    known: dict[type, str] = {
        numcodecs.Zstd: "zstd",
        numcodecs.Blosc: "blosc",
        numcodecs.GZip: "gzip",
        numcodecs.Zlib: "zlib",
    }
    if compressor is not None and type(compressor) not in known:
        raise _Unsupported(f"v2 compressor {type(compressor).__name__}")
    codec = known[type(compressor)] if compressor is not None else None
    if meta.order not in ("C", "F"):
        raise _Unsupported(f"v2 order {meta.order!r}")  # pragma: no cover - zarr validates
    checksum = codec == "zstd" and bool(getattr(compressor, "checksum", False))
    return _Layout(
        folder,
        tuple(meta.shape),
        tuple(meta.chunks),
        dtype,
        dtype,
        meta.order,
        codec,
        checksum,
        _fill(meta, meta.dtype, dtype),
        meta.encode_chunk_key,
    )


def _layout_v3(meta: Any, folder: str) -> _Layout:
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, TransposeCodec, ZstdCodec
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding, V2ChunkKeyEncoding

    if type(meta.chunk_grid) is not RegularChunkGrid:
        raise _Unsupported(f"chunk grid {type(meta.chunk_grid).__name__}")
    if getattr(meta, "storage_transformers", ()):
        raise _Unsupported("storage transformers")
    encoding = meta.chunk_key_encoding
    if type(encoding) not in (DefaultChunkKeyEncoding, V2ChunkKeyEncoding):
        raise _Unsupported(f"chunk key encoding {type(encoding).__name__}")
    dtype = _dtype(meta.data_type)
    codecs = list(meta.codecs)
    names = ", ".join(type(c).__name__ for c in codecs)
    ndim = len(meta.shape)
    if codecs and type(codecs[0]) is TransposeCodec:
        if tuple(codecs[0].order) != tuple(range(ndim)):
            raise _Unsupported(f"transpose codec with order {tuple(codecs[0].order)}")
        codecs = codecs[1:]  # the identity: nothing to undo
    if not codecs or type(codecs[0]) is not BytesCodec:
        raise _Unsupported(f"codecs [{names}] (expected bytes, then one compressor)")
    endian = codecs[0].endian
    rest = codecs[1:]
    known: dict[type, str] = {ZstdCodec: "zstd", BloscCodec: "blosc", GzipCodec: "gzip"}
    if len(rest) > 1 or (rest and type(rest[0]) not in known):
        raise _Unsupported(f"codecs [{names}] (expected bytes, then one of zstd, blosc, gzip)")
    codec = known[type(rest[0])] if rest else None
    stored = dtype
    if dtype.itemsize > 1 and endian is not None:
        stored = dtype.newbyteorder("<" if endian.value == "little" else ">")
    checksum = codec == "zstd" and bool(getattr(rest[0], "checksum", False))
    return _Layout(
        folder,
        tuple(meta.shape),
        tuple(meta.chunk_grid.chunk_shape),
        dtype,
        stored,
        "C",
        codec,
        checksum,
        _fill(meta, meta.data_type, dtype),
        meta.encode_chunk_key,
    )


# -- switches ----------------------------------------------------------------------------------
def default_threads() -> int:
    """This process's share of the cores (:func:`tlcore.lazy.cpu.decode_threads`): all of
    them, or cores / workers in a DataLoader worker set up by tlcore."""
    return cpu.decode_threads()


def _threads_setting() -> int:
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return default_threads()
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: expected a positive integer")
    return value


def partial_enabled() -> bool:
    """Whether chunks are decoded only as far as a region needs (``TLCORE_ZARRFAST_PARTIAL``,
    on unless ``0``/``false``/``no``/``off``)."""
    raw = os.environ.get(PARTIAL_ENV, "1").strip().lower()
    return raw not in ("0", "false", "no", "off")


# -- counters ----------------------------------------------------------------------------------
class DecodeStats:
    """Process-wide counts of the chunks this module read, and of the bytes it decoded
    against the bytes whole decoding would have cost (for benchmarks and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.chunks = 0  # chunk files read (missing ones not counted)
            self.missing = 0  # chunks read as the fill value
            self.partial = 0  # chunks decoded only in part
            self.decoded_bytes = 0  # bytes decoded (or read, uncompressed)
            self.chunk_bytes = 0  # bytes decoding every read chunk whole would give

    def add(self, decoded: int, whole: int) -> None:
        with self._lock:
            self.chunks += 1
            self.partial += decoded < whole
            self.decoded_bytes += decoded
            self.chunk_bytes += whole

    def add_missing(self) -> None:
        with self._lock:
            self.missing += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "chunks": self.chunks,
                "missing": self.missing,
                "partial": self.partial,
                "decoded_bytes": self.decoded_bytes,
                "chunk_bytes": self.chunk_bytes,
            }


#: What every :class:`FastZarrArray` in this process decoded.
stats = DecodeStats()


# -- the array ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Task:
    path: str
    chunk_sel: tuple[slice, ...]
    out_sel: tuple[slice, ...]
    first: int  # first needed byte of the decoded chunk (its memory order)
    stop: int  # one past the last needed byte


class FastZarrArray:
    """A read-only, numpy-style view of one local zarr array that decodes the touched chunks
    of each read on threads. Build it with :func:`open_array`.

    Indexing takes integers, slices (any step) and ``...``; the result is a new C-ordered
    numpy array equal to ``zarr_array[key]`` (same values, same dtype; a 0-d array when every
    index is an integer, as zarr gives). Safe to call from several threads at once."""

    def __init__(
        self, layout: _Layout, *, threads: int | None = None, partial: bool | None = None
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._layout = layout
        self.threads = threads
        self.partial = partial
        self.shape = layout.shape
        self.ndim = len(layout.shape)
        self.dtype = layout.dtype
        self.chunks = layout.chunks

    def __repr__(self) -> str:
        lay = self._layout
        return (
            f"FastZarrArray({lay.folder!r}, shape={self.shape}, chunks={self.chunks}, "
            f"dtype={self.dtype}, codec={lay.codec})"
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)

    def read(self, key: Any, *, partial: bool | None = None) -> np.ndarray:
        """``self[key]``; ``partial`` overrides the partial-decode switch for this read."""
        region, post = split_index(key, self.shape)
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        if out.size:
            if partial is None:
                partial = self.partial if self.partial is not None else partial_enabled()
            tasks = self._tasks(region, partial)
            limit = self.threads if self.threads is not None else _threads_setting()
            lay = self._layout
            _run(lambda task: _read_chunk(lay, task, out), tasks, min(limit, len(tasks)))
        if not post:
            return out
        picked = out[post]
        # All integers: a 0-d array, as zarr returns (a numpy scalar would lose the byte order).
        return picked if isinstance(picked, np.ndarray) else out.reshape(())

    def _tasks(self, region: tuple[slice, ...], partial: bool) -> list[_Task]:
        lay = self._layout
        item = lay.stored.itemsize
        per_axis = []
        for s, k in zip(region, lay.chunks):
            per_axis.append(range(s.start // k, (s.stop - 1) // k + 1))
        # Strides (in elements) of a chunk in its memory order, for the needed byte range.
        strides = _strides(lay.chunks, lay.order)
        tasks = []
        for coords in itertools.product(*per_axis):
            chunk_sel, out_sel = [], []
            first = last = 0
            for c, s, k, stride in zip(coords, region, lay.chunks, strides):
                lo, hi = max(s.start, c * k), min(s.stop, (c + 1) * k)
                chunk_sel.append(slice(lo - c * k, hi - c * k))
                out_sel.append(slice(lo - s.start, hi - s.start))
                first += (lo - c * k) * stride
                last += (hi - 1 - c * k) * stride
            if not partial:
                first, last = 0, math.prod(lay.chunks) - 1
            path = os.path.join(lay.folder, lay.key(coords))
            tasks.append(
                _Task(path, tuple(chunk_sel), tuple(out_sel), first * item, (last + 1) * item)
            )
        return tasks


def _strides(chunks: Sequence[int], order: str) -> list[int]:
    dims = list(chunks) if order == "C" else list(reversed(chunks))
    strides = [math.prod(dims[i + 1 :]) for i in range(len(dims))]
    return strides if order == "C" else list(reversed(strides))


# -- one chunk ---------------------------------------------------------------------------------
_local = threading.local()


def _buffer(name: str, nbytes: int) -> np.ndarray:
    """A uint8 buffer of at least ``nbytes`` owned by this thread (reused between chunks)."""
    if nbytes > _KEEP_BUFFER_BYTES:
        return np.empty(nbytes, dtype=np.uint8)
    buf: np.ndarray | None = getattr(_local, name, None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(nbytes, dtype=np.uint8)
        setattr(_local, name, buf)
    return buf


def _read_chunk(lay: _Layout, task: _Task, out: np.ndarray) -> None:
    nbytes = lay.chunk_nbytes
    dest = _buffer("decoded", nbytes)
    decoded = _load_chunk(lay, task, dest[:nbytes])
    if decoded is None:  # no chunk: the fill value, as zarr reads it
        out[task.out_sel] = lay.fill
        stats.add_missing()
        return
    stats.add(decoded, nbytes)
    chunk = dest[:nbytes].view(lay.stored).reshape(lay.chunks, order=lay.order)
    out[task.out_sel] = chunk[task.chunk_sel]


def _load_chunk(lay: _Layout, task: _Task, dest: np.ndarray) -> int | None:
    """Read and decode the chunk file into ``dest`` (at least the task's byte range); the
    bytes decoded, or None when there is no chunk (zarr's ``LocalStore`` reads a missing
    file, or a folder in its place, as no chunk)."""
    try:
        fd = os.open(task.path, _OPEN_FLAGS)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        size = os.fstat(fd).st_size
        if lay.codec is None:
            # Uncompressed: read only the needed byte range, in place.
            _check_size(size, dest.nbytes)
            _pread_into(fd, dest[task.first : task.stop], task.first)
            return task.stop - task.first
        src = _buffer("encoded", size)[:size]
        _pread_into(fd, src, 0)
        return _decode(lay, task, src, dest)
    except IsADirectoryError:
        return None
    except (ValueError, EOFError, RuntimeError, zlib.error) as exc:
        raise ValueError(f"{task.path}: cannot decode the chunk: {exc}") from exc
    finally:
        os.close(fd)


def _pread_into(fd: int, view: np.ndarray, offset: int) -> None:
    """Fill ``view`` from the file at ``offset``, reading straight into it where the
    platform can (``preadv``)."""
    mv = memoryview(view).cast("B")  # type: ignore[arg-type]
    got = 0
    while got < len(mv):
        if _PREADV is not None:
            n = _PREADV(fd, [mv[got:]], offset + got)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + got, os.SEEK_SET)
            data = os.read(fd, len(mv) - got)
            n = len(data)
            mv[got : got + n] = data
        if n == 0:
            raise ValueError(f"the file ends after {offset + got} bytes")
        got += n


_PREADV: Callable[..., int] | None = getattr(os, "preadv", None)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _check_size(got: int, nbytes: int) -> int:
    if got != nbytes:
        raise ValueError(f"{got} bytes decoded, expected {nbytes} (a corrupt chunk?)")
    return got


def _decode(lay: _Layout, task: _Task, src: np.ndarray, dest: np.ndarray) -> int:
    """Decode ``src`` into ``dest`` (the chunk's bytes): at least bytes
    ``[task.first, task.stop)``, the whole chunk when decoding part of it would not pay.
    Returns the bytes decoded."""
    nbytes = dest.nbytes
    share = PARTIAL_MAX_SHARE * nbytes
    codec = lay.codec
    if codec == "zstd":
        lib = _zstd()
        if lib is None:  # no usable libzstd: numcodecs decodes whole chunks
            return _copy_whole(_numcodecs().Zstd().decode(src), dest)
        # A stream decodes from the start: the prefix up to the last needed byte. Frames
        # with a checksum are decoded whole, so a corrupt chunk fails as it does in zarr.
        if task.stop <= share and not lay.checksum:
            got = lib.prefix(src, dest, task.stop)
            if got >= task.stop:
                return got
        return _check_size(lib.whole(src, dest), nbytes)
    if codec == "blosc":
        blosc = _blosc()
        # Blosc compresses blocks independently: only the blocks that hold the range.
        if blosc is not None and task.stop - task.first <= share:
            got = blosc.slice(src, dest, task.first, task.stop)
            if got:
                return got
        if blosc is not None and blosc.whole(src, dest) == nbytes:
            return nbytes
        # No usable c-blosc, or a header it should not be trusted with: numcodecs decodes
        # (and fails) exactly as zarr does.
        return _copy_whole(_numcodecs().Blosc().decode(src), dest)
    # gzip, zlib: zlib's inflate releases the GIL. A gzip member ends with its size (mod 2**32):
    # one that does not match is decoded whole, to fail as in zarr.
    if task.stop <= share and (codec != "gzip" or _gzip_size(src) == nbytes % 2**32):
        stream = zlib.decompressobj(31 if codec == "gzip" else 15)
        head = stream.decompress(src, task.stop)  # type: ignore[arg-type]
        if len(head) >= task.stop:
            dest[: len(head)] = np.frombuffer(head, dtype=np.uint8)
            return len(head)
    # Whole: numcodecs' own decode (a gzip file may hold several members).
    numcodecs = _numcodecs()
    whole = (numcodecs.GZip() if codec == "gzip" else numcodecs.Zlib()).decode(src)
    return _copy_whole(whole, dest)


def _gzip_size(src: np.ndarray) -> int:
    return int.from_bytes(src[-4:].tobytes(), "little") if src.nbytes >= 18 else -1


def _copy_whole(decoded: Any, dest: np.ndarray) -> int:
    data = np.frombuffer(memoryview(decoded).cast("B"), dtype=np.uint8)
    _check_size(data.nbytes, dest.nbytes)
    dest[:] = data
    return data.nbytes


# -- native decoders (ctypes calls release the GIL) --------------------------------------------
class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _ZstdLib:
    """libzstd through ctypes: whole frames and prefixes, one decompression context per
    thread."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        size_t, vp = ctypes.c_size_t, ctypes.c_void_p
        self._create = _fn(lib, "ZSTD_createDCtx", vp, [])
        self._free = _fn(lib, "ZSTD_freeDCtx", size_t, [vp])
        self._reset = _fn(lib, "ZSTD_DCtx_reset", size_t, [vp, ctypes.c_int])
        self._is_error = _fn(lib, "ZSTD_isError", ctypes.c_uint, [size_t])
        self._stream = _fn(
            lib,
            "ZSTD_decompressStream",
            size_t,
            [vp, ctypes.POINTER(_OutBuffer), ctypes.POINTER(_InBuffer)],
        )
        self._whole = _fn(lib, "ZSTD_decompressDCtx", size_t, [vp, vp, size_t, vp, size_t])
        self._content_size = _fn(lib, "ZSTD_getFrameContentSize", ctypes.c_ulonglong, [vp, size_t])
        self._frame_size = _fn(lib, "ZSTD_findFrameCompressedSize", size_t, [vp, size_t])

    def _context(self) -> int:
        held: _DCtx | None = getattr(_local, "zstd", None)
        if held is None or held.owner is not self:
            held = _DCtx(self, self._create())
            _local.zstd = held
        return held.pointer

    def whole(self, src: np.ndarray, dest: np.ndarray) -> int:
        """Decode every frame of ``src`` into ``dest``; the bytes written, or -1."""
        n = self._whole(self._context(), dest.ctypes.data, dest.nbytes, src.ctypes.data, src.nbytes)
        return -1 if self._is_error(n) else int(n)

    def prefix(self, src: np.ndarray, dest: np.ndarray, stop: int) -> int:
        """Decode ``src`` into ``dest`` until its first ``stop`` bytes are written (zstd
        decodes a block of at most 128 KiB past them); the bytes written, or -1.

        Also -1 unless ``src`` is one complete frame that says it holds ``dest.nbytes``
        bytes (both read from headers, nothing decoded): a truncated or wrong-sized chunk is
        then decoded whole and fails as it does in zarr, instead of a prefix hiding it."""
        size = int(self._content_size(src.ctypes.data, src.nbytes))  # an error code is huge
        if size != dest.nbytes:  # also a frame of unknown size: decode it whole
            return -1
        if self._frame_size(src.ctypes.data, src.nbytes) != src.nbytes:
            return -1
        ctx = self._context()
        self._reset(ctx, 1)  # ZSTD_reset_session_only: the last prefix may have stopped mid-frame
        inb = _InBuffer(src.ctypes.data, src.nbytes, 0)
        outb = _OutBuffer(dest.ctypes.data, stop, 0)
        while outb.pos < stop:
            ret = self._stream(ctx, ctypes.byref(outb), ctypes.byref(inb))
            if self._is_error(ret):
                return -1
            if inb.pos >= inb.size and (ret == 0 or outb.pos < outb.size):
                break  # input used up
        return int(outb.pos)


class _DCtx:
    """One thread's zstd context, freed with the thread's locals."""

    def __init__(self, owner: _ZstdLib, pointer: int) -> None:
        if not pointer:
            raise MemoryError("ZSTD_createDCtx failed")
        self.owner, self.pointer = owner, pointer

    def __del__(self) -> None:
        self.owner._free(self.pointer)


class _BloscLib:
    """c-blosc 1.x through ctypes: whole chunks with the contextual (thread-safe) call, and
    ranges with ``blosc_getitem``, which decodes only the blocks that hold the range (it keeps
    its state on the stack: thread-safe too)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, c_int, size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        self._whole = _fn(lib, "blosc_decompress_ctx", c_int, [vp, vp, size_t, c_int])
        self._getitem = _fn(lib, "blosc_getitem", c_int, [vp, c_int, c_int, vp])

    def whole(self, src: np.ndarray, dest: np.ndarray) -> int:
        """Decode ``src`` into ``dest``; the bytes written, or -1."""
        if not self._header_ok(src, dest.nbytes):
            return -1
        return int(self._whole(src.ctypes.data, dest.ctypes.data, dest.nbytes, 1))

    def slice(self, src: np.ndarray, dest: np.ndarray, first: int, stop: int) -> int:
        """Decode bytes ``[first, stop)`` (widened to whole items) into the same place of
        ``dest``; the bytes written, or 0 when the chunk cannot be read this way."""
        if not self._header_ok(src, dest.nbytes):
            return 0
        typesize = int(src[3])
        start, end = first // typesize, -(-stop // typesize)
        if end * typesize > dest.nbytes:
            return 0
        want = (end - start) * typesize
        got = self._getitem(
            src.ctypes.data, start, end - start, dest.ctypes.data + start * typesize
        )
        return want if int(got) == want else 0

    @staticmethod
    def _header_ok(src: np.ndarray, nbytes: int) -> bool:
        # blosc_getitem trusts the header: check it against the file before handing it over.
        if src.nbytes < 16 or src[0] != 2 or src[3] == 0:
            return False
        head = src[:16].view("<u4")
        return int(head[1]) == nbytes and int(head[3]) == src.nbytes


def _extension(module: str) -> str:
    """The file of a compiled module (numcodecs' extensions export their C library's API)."""
    path = importlib.import_module(module).__file__
    if path is None:  # pragma: no cover - a compiled module has a file
        raise ImportError(f"{module} has no file")
    return path


def _fn(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_libs: dict[str, Any] = {}
_libs_lock = threading.Lock()


def _load(name: str, build: Callable[[], Any]) -> Any:
    if name not in _libs:
        with _libs_lock:
            if name not in _libs:
                try:
                    _libs[name] = build()
                except (OSError, AttributeError, ImportError):
                    _libs[name] = None  # not there: numcodecs decodes whole chunks
    return _libs[name]


def _zstd() -> _ZstdLib | None:
    """libzstd: the copy numcodecs carries (its extension exports the zstd API), else the
    system's."""

    def build() -> _ZstdLib:
        try:
            return _ZstdLib(ctypes.CDLL(_extension("numcodecs.zstd")))
        except (OSError, AttributeError):
            found = ctypes.util.find_library("zstd")
            if found is None:
                raise
            return _ZstdLib(ctypes.CDLL(found))

    result: _ZstdLib | None = _load("zstd", build)
    return result


def _blosc() -> _BloscLib | None:
    """c-blosc as numcodecs carries it (its extension exports the blosc API)."""

    def build() -> _BloscLib:
        return _BloscLib(ctypes.CDLL(_extension("numcodecs.blosc")))

    result: _BloscLib | None = _load("blosc", build)
    return result


# -- the thread pool ---------------------------------------------------------------------------
class _Job:
    """Tasks shared by the calling thread and the pool's helpers: whoever is free takes the
    next; the caller returns when every task taken has finished."""

    def __init__(self, fn: Callable[[Any], None], tasks: Sequence[Any]) -> None:
        self.fn, self.tasks = fn, tasks
        self.next = 0
        self.running = 0
        self.error: BaseException | None = None
        self.cond = threading.Condition(threading.Lock())

    def work(self) -> None:
        while True:
            with self.cond:
                if self.error is not None or self.next >= len(self.tasks):
                    return
                task = self.tasks[self.next]
                self.next += 1
                self.running += 1
            try:
                self.fn(task)
            except BaseException as exc:
                with self.cond:
                    if self.error is None:
                        self.error = exc
            finally:
                with self.cond:
                    self.running -= 1
                    if self.running == 0:
                        self.cond.notify_all()

    def wait(self) -> None:
        with self.cond:
            while self.running:
                self.cond.wait()
        if self.error is not None:
            raise self.error


class _Pool:
    """Daemon threads that run helpers, created on demand in the process that owns them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def help(self, job: _Job, helpers: int) -> None:
        with self.lock:
            while len(self.threads) < helpers:
                thread = threading.Thread(target=self._loop, name="tlcore-zarrfast", daemon=True)
                thread.start()
                self.threads.append(thread)
        for _ in range(helpers):
            self.queue.put(job)

    def _loop(self) -> None:
        while True:
            self.queue.get().work()


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    pool = _pool
    if pool is None or pool.pid != os.getpid():
        with _pool_lock:
            if _pool is None or _pool.pid != os.getpid():
                _pool = _Pool()
            pool = _pool
    return pool


def _after_fork_in_child() -> None:
    # The parent's threads do not exist here, and a lock one of them held stays held.
    global _pool, _pool_lock, _libs_lock
    _pool = None
    _pool_lock = threading.Lock()
    _libs_lock = threading.Lock()
    stats._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _run(fn: Callable[[Any], None], tasks: Sequence[Any], workers: int) -> None:
    """``fn(task)`` for every task, on ``workers`` threads, the calling thread one of them."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            fn(task)
        return
    job = _Job(fn, tasks)
    _get_pool().help(job, workers - 1)
    job.work()
    job.wait()
