"""Sharded arrays (zarr v3 ``sharding_indexed``): each shard file a region touches is opened
once, its index read (one small read at its start or end) and checked, and every touched inner
chunk becomes one byte range of that file. Inner chunks the region does not touch are neither
read nor decoded; no index outlives the read that used it (nothing is cached).

What a shard gives, inner chunk by inner chunk (zarr's reading, the safe way where zarr has
none):

* a missing shard file (or a folder in its place): every inner chunk is the fill value, as zarr
  reads it; an index entry ``(2^64-1, 2^64-1)``: that inner chunk is the fill value, as zarr;
* an index whose CRC-32C does not match, or a file shorter than its index: the shard is
  damaged, and every read touching it raises (zarr raises on both);
* an empty shard file: damaged, raises (zarr reads it as no shard, the fill value, when the
  region covers the whole shard, and raises otherwise);
* an entry whose byte range does not lie inside the file, or is empty: the inner chunk is
  damaged and raises (zarr hands the short bytes to the decoder, which may fail, return
  garbage for blosc, or, when nothing is left, read the fill value);
* the inner chunk's bytes are decoded whole, as any compressed chunk here (see
  :mod:`tlcore.decoders.zarrfast.codecs`), so a damaged inner chunk raises as in zarr.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Sequence
from typing import Any

import numpy as np

from tlcore.decoders.zarrfast import codecs, settings
from tlcore.decoders.zarrfast.layout import Layout, ShardLayout

__all__ = ["EMPTY", "ShardError", "locate", "pread_exact"]

#: An index entry's offset and length for an inner chunk that was never written.
EMPTY = 2**64 - 1
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class ShardError(Exception):
    """A touched shard file or inner chunk cannot be read: the task (or the shard's path)
    and the reason, for :class:`tlcore.decoders.zarrfast.ChunkReadError`."""

    def __init__(self, task: Any, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.task = task
        self.cause = cause


def pread_exact(fd: int, n: int, offset: int) -> bytes:
    """``n`` bytes of the file at ``offset``, in a fresh ``bytes`` object."""
    data = os.pread(fd, n, offset)
    while len(data) < n:
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            raise codecs.ChunkDamage(f"the file ends after {offset + len(data)} bytes (it "
                                     "changed while being read?)")  # fmt: skip
        data += more
    return data


def read_index(fd: int, size: int, shard: ShardLayout) -> np.ndarray:
    """The index of one shard file (``per_shard + (2,)`` uint64: offset, nbytes), checked.

    Raises:
        tlcore.decoders.zarrfast.codecs.ChunkDamage: the file is shorter than its index, or the
            index's CRC-32C does not match.
    """
    n = shard.index_nbytes
    if size < n:
        raise codecs.ChunkDamage(f"the shard file has {size} bytes, less than its index "
                                 f"({n} bytes): it is empty or truncated")  # fmt: skip
    raw = pread_exact(fd, n, size - n if shard.index_at_end else 0)
    body = raw
    if shard.checksum:
        import google_crc32c  # zarr's own dependency for the crc32c codec

        body, stored = raw[:-4], raw[-4:]
        if int(google_crc32c.value(body)).to_bytes(4, "little") != stored:
            raise codecs.ChunkDamage("its shard index does not match its CRC-32C checksum "
                                     "(a damaged or truncated shard file)")  # fmt: skip
    entries = np.frombuffer(body, dtype=shard.index_dtype).astype(np.uint64)
    return entries.reshape((*shard.per_shard, 2))


def locate(lay: Layout, tasks: Sequence[Any], opened: dict[str, int]) -> list[Any]:
    """The tasks with their inner chunk's place in its shard file: ``fd`` (an open descriptor,
    added to ``opened`` under the shard's path: the caller closes them), ``offset`` and
    ``length``; ``fd=-1`` where the inner chunk reads as the fill value.

    Raises:
        ShardError: a shard file or an index entry is damaged (the task names which).
    """
    shard = lay.shard
    assert shard is not None
    indexes: dict[str, tuple[int, int, np.ndarray] | None] = {}
    out = []
    for task in tasks:
        if task.path not in indexes:
            try:
                indexes[task.path] = _open_shard(task.path, shard, opened)
            except (codecs.ChunkDamage, OSError) as exc:
                raise ShardError(task, exc) from exc
        found = indexes[task.path]
        if found is None:
            out.append(dataclasses.replace(task, fd=-1))
            continue
        fd, size, index = found
        local = tuple(c % p for c, p in zip(task.coords, shard.per_shard))
        offset, length = (int(v) for v in index[local])
        if offset == EMPTY and length == EMPTY:
            out.append(dataclasses.replace(task, fd=-1))
            continue
        if length == 0 or offset + length > size:
            damage = codecs.ChunkDamage(
                f"its shard index puts inner chunk {local} at bytes {offset}-{offset + length} "
                f"of a {size}-byte file (a damaged index or a truncated file)"
            )
            raise ShardError(task, damage)
        out.append(dataclasses.replace(task, fd=fd, offset=offset, length=length))
    return out


def _open_shard(
    path: str, shard: ShardLayout, opened: dict[str, int]
) -> tuple[int, int, np.ndarray] | None:
    """The open shard file, its size and its index; None when there is no shard file (zarr's
    ``LocalStore`` reads a missing file, or a folder in its place, as no shard)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    opened[path] = fd
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        return None
    try:
        index = read_index(fd, info.st_size, shard)
    except IsADirectoryError:  # pragma: no cover - some systems open folders
        return None
    settings.stats.add_read(shard.index_nbytes)
    return fd, info.st_size, index
