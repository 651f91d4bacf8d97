"""Decoding one compressed chunk, exactly as zarr does: through the numcodecs codec classes
zarr itself calls (``numcodecs.Zstd``, ``Blosc``, ``GZip``, ``Zlib``), public API only, on a
fresh copy of the file's bytes, the whole chunk at once.

Whole, because every check zarr's decode makes must run here too: a damaged chunk that zarr
refuses (a corrupt zstd or blosc block anywhere in the chunk, a gzip CRC-32 or zlib Adler-32
trailer that does not match, a truncated stream) is refused here, and a chunk that zarr
decodes gives the same bytes. Decoding only the part a region needs would skip the checks on
the rest (measured in the throughput benchmark: the cost of exactness, see docs/performance.md).

Before anything is handed to a decoder, sizes a header states are checked against the file:
a blosc header whose compressed size is larger than the file (a truncated or empty chunk:
c-blosc would read past the buffer, and zarr returns whatever memory follows) is refused
here, and so is a header whose decoded size is not the chunk's (zarr fails on it too).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ChunkDamage", "decode"]

_BLOSC_HEADER = 16  # c-blosc 1.x: version, versionlz, flags, typesize, nbytes, blocksize, cbytes


class ChunkDamage(ValueError):
    """The chunk's bytes cannot be decoded into a chunk; the message says why."""


_codecs: dict[str, Any] = {}


def _codec(name: str) -> Any:
    """The numcodecs codec zarr decodes ``name`` chunks with (decoding ignores the level)."""
    found = _codecs.get(name)
    if found is None:
        import numcodecs  # type: ignore[import-untyped]

        make = {"zstd": numcodecs.Zstd, "blosc": numcodecs.Blosc, "gzip": numcodecs.GZip,
                "zlib": numcodecs.Zlib}[name]  # fmt: skip
        found = _codecs[name] = make()
    return found


def decode(codec: str, data: Any, nbytes: int) -> np.ndarray:
    """The decoded chunk (``nbytes`` uint8) of the file bytes ``data``.

    Args:
        codec: one of ``zstd``, ``blosc``, ``gzip``, ``zlib``.
        data: the whole chunk file or object (``bytes``, or a uint8 array), not changed by
            anyone while this call runs.
        nbytes: the bytes a decoded chunk holds.

    Returns:
        A new uint8 array of ``nbytes`` bytes.

    Raises:
        ChunkDamage: the chunk cannot be decoded (the decoder's error is chained), or decodes
            to another size.
    """
    if codec == "blosc":
        _check_blosc_header(data, nbytes)
    try:
        decoded = _codec(codec).decode(data)
    except Exception as exc:  # every decoder raises its own types (RuntimeError, zlib.error...)
        raise ChunkDamage(f"{codec} cannot decode it ({type(exc).__name__}: {exc})") from exc
    out = np.frombuffer(memoryview(decoded).cast("B"), dtype=np.uint8)
    if out.nbytes != nbytes:
        raise ChunkDamage(f"it decodes to {out.nbytes} bytes, a chunk holds {nbytes}")
    return out


def _check_blosc_header(data: Any, nbytes: int) -> None:
    # c-blosc 1.x trusts the header's sizes (there is no source size in its decode call): a
    # header that promises more bytes than the file has makes it read past the buffer.
    view = memoryview(data).cast("B")  # bytes, or a uint8 array of an object store's bytes
    size = view.nbytes
    if size < _BLOSC_HEADER:
        raise ChunkDamage(f"a blosc chunk is at least {_BLOSC_HEADER} bytes, the file has "
                          f"{size} (an empty or truncated file)")  # fmt: skip
    head = bytes(view[:_BLOSC_HEADER])
    stated, cbytes = int.from_bytes(head[4:8], "little"), int.from_bytes(head[12:16], "little")
    if cbytes > size:
        raise ChunkDamage(f"its blosc header says {cbytes} bytes, the file has {size} "
                          "(a truncated file?)")  # fmt: skip
    if stated != nbytes:
        raise ChunkDamage(f"its blosc header says it decodes to {stated} bytes, a chunk holds "
                          f"{nbytes}")  # fmt: skip
