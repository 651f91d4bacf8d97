"""Region reads of local zarr arrays, decoded on a few plain threads: the same pixels as
``zarr_array[region]``, faster, and safe in a process forked after use.

zarr's own read pays, per call, an asyncio bridge, thread hops and per-chunk Python layers.
This package reads the chunk files a region touches itself (read-only ``os.open``), decodes
them with the codec classes zarr itself calls (numcodecs' ``Zstd``, ``Blosc``, ``GZip``,
``Zlib``: their decoders release the GIL) on a small per-process thread pool, and copies each
chunk's needed part into one preallocated output.

    fast = open_array(zarr_array)        # None when the array is not supported: use zarr
    pixels = fast[0, 3:40, 100:228]      # numpy basic indexing; equal to zarr_array[...]

Supported, decided from the array's metadata alone (anything else is refused, with the reason
from :func:`unsupported_reason`, and the caller reads through zarr):

* the store is a ``zarr.storage.LocalStore`` (a folder on this machine), or an object store
  that fetches whole chunk objects for it (:class:`~tlcore.decoders.zarrfast.layout.ObjectSource`:
  the OME-Zarr plugin's remote stores). Then the chunk objects a read touches are fetched in
  one concurrent batch through the store (its retries, its prefetch cache), and decoded here
  like local chunk files; a chunk that a later sample of the process also needs is kept
  decoded for it (:meth:`tlcore.io.prefetch.AheadCache.keep_decoded`);
* zarr format 3: a regular chunk grid, ``default`` or ``v2`` chunk key encoding (either
  separator), no storage transformers, codecs ``bytes`` (either endianness), optionally
  preceded by an identity ``transpose``, then at most one of ``zstd``, ``blosc``, ``gzip``;
  or one ``sharding_indexed`` codec whose inner chunks use such codecs, its index ``bytes``
  with or without ``crc32c``, at the start or the end of the shard file;
* zarr format 2: compressor ``zstd``, ``blosc``, ``gzip``, ``zlib`` or none, no filters,
  order ``C`` or ``F``, either dimension separator;
* numeric data types (bool, integers, floats, complex) of either byte order, at least one
  dimension.

Refused: sharding inside sharding, ``crc32c`` on chunks and other codecs, filters,
object/string/structured/datetime data types, sharded arrays on object storage, other remote
and wrapped stores.

Sharded arrays (:mod:`~tlcore.decoders.zarrfast.shards`): each touched shard file is opened
once per read, its index read (one small read) and checked, and only the inner chunks the
region touches are read (their byte ranges) and decoded; no index or buffer is kept after
the read. A damaged shard raises, including the few damages zarr reads as the fill value (an
empty shard file, an index entry past the end of the file).

What a read returns, chunk by chunk (the rule the differential tests check against zarr):

* a missing chunk file, or a folder in its place, reads as the fill value, as zarr's
  ``LocalStore`` does; a v2 ``fill_value: null`` reads as zero, the data type's default, as
  zarr 3 does;
* a chunk zarr decodes gives zarr's bytes: the same numcodecs decoder runs on the whole file;
* a damaged chunk zarr refuses (empty, truncated, corrupt, a checksum that does not match,
  a decoded size that is not the chunk's) raises :class:`ChunkReadError` (a ``ValueError``)
  naming the chunk file, its coordinates, the array and the store;
* one difference, the safe way: a blosc chunk whose header promises more bytes than the file
  holds (an empty or truncated file) raises here, where c-blosc, called by zarr, reads past
  the buffer and returns whatever memory follows.

Compressed chunks are always decoded whole: decoding only the part a region needs would skip
the checks zarr's decode makes on the rest (a zstd or blosc block, a gzip or zlib checksum),
and a damaged chunk could then read without an error. Uncompressed chunks have no such check:
only the needed byte range is read (the file's size is checked first, as zarr checks it).

Switches (environment, read on each call; also per :class:`FastZarrArray`):

* ``TLCORE_ZARRFAST_THREADS``: at most this many threads decode one region (the calling
  thread included; ``1`` decodes in the caller only). Default: this process's share of the
  cores (:func:`tlcore.lazy.cpu.decode_threads`), never more than the chunks the region
  touches. In DataLoader workers tlcore sets the share so that workers x threads is about the
  core count.
* ``TLCORE_ZARRFAST_PARTIAL``: ``0`` reads uncompressed chunks whole too; on by default.
  Pixels are identical either way.

Fork: the pool's threads are created lazily, once per process, and dropped in a forked child
(``os.register_at_fork``, plus a pid check), so a DataLoader worker forked after the parent
read a crop starts its own threads. Nothing here holds native library state across a fork.

Modules: :mod:`~tlcore.decoders.zarrfast.layout` (array layouts from zarr metadata),
:mod:`~tlcore.decoders.zarrfast.shards` (shard indexes and inner chunks' byte ranges),
:mod:`~tlcore.decoders.zarrfast.codecs` (decoding one chunk),
:mod:`~tlcore.decoders.zarrfast.pool` (the fork-safe thread pool),
:mod:`~tlcore.decoders.zarrfast.settings` (switches and counters),
:mod:`~tlcore.decoders.zarrfast.array` (:class:`FastZarrArray`).
"""

from __future__ import annotations

from typing import Any

from tlcore.decoders.zarrfast.array import ChunkReadError, FastZarrArray
from tlcore.decoders.zarrfast.layout import Unsupported, layout
from tlcore.decoders.zarrfast.settings import (
    PARTIAL_ENV,
    THREADS_ENV,
    DecodeStats,
    default_threads,
    partial_enabled,
    stats,
)

__all__ = [
    "PARTIAL_ENV",
    "THREADS_ENV",
    "ChunkReadError",
    "DecodeStats",
    "FastZarrArray",
    "default_threads",
    "open_array",
    "partial_enabled",
    "stats",
    "unsupported_reason",
]


def unsupported_reason(array: Any) -> str | None:
    """Why :func:`open_array` refuses ``array`` (a ``zarr.Array``), or None when it is
    supported."""
    try:
        layout(array)
    except Unsupported as exc:
        return str(exc)
    return None


def open_array(
    array: Any, *, threads: int | None = None, partial: bool | None = None
) -> FastZarrArray | None:
    """A :class:`FastZarrArray` over ``array``, or None when it is not supported (see the
    module docstring): then read through zarr.

    Args:
        array: an open ``zarr.Array``; its metadata as read then fixes the layout.
        threads: overrides ``TLCORE_ZARRFAST_THREADS`` for this array.
        partial: overrides ``TLCORE_ZARRFAST_PARTIAL`` for this array.

    Returns:
        The fast view, or None.
    """
    try:
        found = layout(array)
    except Unsupported:
        return None
    return FastZarrArray(found, threads=threads, partial=partial)
