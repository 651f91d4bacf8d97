""":class:`FastZarrArray`: region reads of one local zarr array, its touched chunk files read
and decoded on a few threads, each chunk's needed part copied into one output."""

from __future__ import annotations

import itertools
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcore.decoders.zarrfast import codecs, pool, settings, shards
from tlcore.decoders.zarrfast.layout import Layout
from tlcore.errors import TlcoreError
from tlcore.io import prefetch as ahead
from tlcore.lazy.reader import split_index

__all__ = ["ChunkReadError", "FastZarrArray"]

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


class ChunkReadError(TlcoreError, ValueError):
    """A chunk file that exists cannot be read or decoded (zarr refuses it too). The message
    names the chunk file, its chunk coordinates, the array and the store."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class _Task:
    path: str
    coords: tuple[int, ...]
    chunk_sel: tuple[slice, ...]
    out_sel: tuple[slice, ...]
    first: int  # first needed byte of the decoded chunk (its memory order)
    stop: int  # one past the last needed byte
    # Sharded arrays (path: the shard file): the open shard file (-1: the fill value) and the
    # inner chunk's byte range in it, from the shard's index (shards.locate).
    fd: int = -1
    offset: int = 0
    length: int = 0


class FastZarrArray:
    """A read-only, numpy-style view of one local zarr array that decodes the touched chunks
    of each read on threads. Build it with :func:`tlcore.decoders.zarrfast.open_array`.

    Indexing takes integers, slices (any step) and ``...``; the result is a new C-ordered
    numpy array equal to ``zarr_array[key]`` (same values, same dtype; a 0-d array when every
    index is an integer, as zarr gives). A chunk file zarr cannot decode raises
    :class:`ChunkReadError` naming it. Safe to call from several threads at once.

    The layout (shape, chunking, codec) is the one of the ``zarr.Array`` it was built from,
    as zarr's own array object keeps it: reopen both after rewriting the array's metadata.
    """

    def __init__(
        self, layout: Layout, *, threads: int | None = None, partial: bool | None = None
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

    @property
    def layout(self) -> Layout:
        """How the array's chunks are stored (read from its metadata when opened)."""
        return self._layout

    def __repr__(self) -> str:
        lay = self._layout
        return (
            f"FastZarrArray({lay.folder!r}, shape={self.shape}, chunks={self.chunks}, "
            f"dtype={self.dtype}, codec={lay.codec})"
        )

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read(key)

    def read(self, key: Any, *, partial: bool | None = None) -> np.ndarray:
        """``self[key]``; ``partial`` overrides the partial-read switch for this read.

        Args:
            key: integers, slices and ``...``, as numpy basic indexing.
            partial: read only the needed byte range of uncompressed chunks (compressed
                chunks are always decoded whole); None: the array's setting, else
                ``TLCORE_ZARRFAST_PARTIAL``.

        Returns:
            A new array equal to ``zarr_array[key]``.

        Raises:
            ChunkReadError: a touched chunk file cannot be read or decoded.
        """
        region, post = split_index(key, self.shape)
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        if out.size:
            if partial is None:
                partial = self.partial if self.partial is not None else settings.partial_enabled()
            tasks = self._tasks(region, partial)
            limit = self.threads if self.threads is not None else settings.threads_setting()
            lay = self._layout
            opened: dict[str, int] = {}  # shard files, open for this read only
            try:
                if lay.objects is not None:
                    _read_objects(lay, tasks, out, limit)
                else:
                    if lay.shard is not None:
                        try:
                            tasks = shards.locate(lay, tasks, opened)
                        except shards.ShardError as exc:
                            raise _error(lay, exc.task, exc.cause) from exc.cause
                    pool.run(lambda t: _read_chunk(lay, t, out), tasks, min(limit, len(tasks)))
            finally:
                for fd in opened.values():
                    os.close(fd)
        if not post:
            return out
        picked = out[post]
        # All integers: a 0-d array, as zarr returns (a numpy scalar would lose the byte order).
        return picked if isinstance(picked, np.ndarray) else out.reshape(())

    def _tasks(self, region: tuple[slice, ...], partial: bool) -> list[_Task]:
        lay = self._layout
        item = lay.stored.itemsize
        per_axis = [range(s.start // k, (s.stop - 1) // k + 1) for s, k in zip(region, lay.chunks)]
        per_shard = lay.shard.per_shard if lay.shard is not None else None
        # Strides (in elements) of a chunk in its memory order, for the needed byte range.
        strides = _strides(lay.chunks, lay.order)
        # Compressed chunks are decoded whole, and objects are fetched whole.
        whole = not partial or lay.codec is not None or lay.objects is not None
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
            if whole:
                first, last = 0, math.prod(lay.chunks) - 1
            # Sharded: the shard file holding the inner chunk.
            at = coords if per_shard is None else tuple(c // p for c, p in zip(coords, per_shard))
            path = _join(lay, lay.key(at))
            tasks.append(_Task(path, coords, tuple(chunk_sel), tuple(out_sel), first * item,
                               (last + 1) * item))  # fmt: skip
        return tasks


def _join(lay: Layout, key: str) -> str:
    if lay.objects is not None:  # the object's name, as tlcore.io.prefetch knows it
        return f"{lay.folder}/{key}"
    return os.path.join(lay.folder, key)


def _strides(chunks: Sequence[int], order: str) -> list[int]:
    dims = list(chunks) if order == "C" else list(reversed(chunks))
    strides = [math.prod(dims[i + 1 :]) for i in range(len(dims))]
    return strides if order == "C" else list(reversed(strides))


# -- one chunk ---------------------------------------------------------------------------------
def _read_chunk(lay: Layout, task: _Task, out: np.ndarray) -> None:
    nbytes = lay.chunk_nbytes
    try:
        if lay.shard is not None:
            decoded = _load_inner_chunk(lay, task, nbytes)
        else:
            decoded = _load_chunk(lay, task, nbytes)
    except (codecs.ChunkDamage, OSError) as exc:
        raise _error(lay, task, exc) from exc
    if decoded is None:  # no chunk: the fill value, as zarr reads it
        out[task.out_sel] = lay.fill
        settings.stats.add_missing()
        return
    settings.stats.add(task.stop - task.first, nbytes)
    chunk = decoded.view(lay.stored).reshape(lay.chunks, order=lay.order)
    out[task.out_sel] = chunk[task.chunk_sel]


# -- chunks on object storage ------------------------------------------------------------------
def _read_objects(lay: Layout, tasks: list[_Task], out: np.ndarray, limit: int) -> None:
    """Fetch the tasks' chunk objects in one concurrent batch through the store, then decode
    them on the pool's threads into ``out``. A chunk some later sample of this process also
    needs, and that was fetched ahead (:mod:`tlcore.io.prefetch`), is kept decoded for it."""
    assert lay.objects is not None
    cache = ahead.active()
    ready: dict[str, Any] = {}
    if cache is not None:
        for task in tasks:
            found = cache.lookup_decoded(task.path)
            if found is not None:
                ready[task.path] = found
    root = len(lay.store) + 1
    missing = list(dict.fromkeys(t.path for t in tasks if t.path not in ready))
    fetched = dict(zip(missing, lay.objects.fetch_objects([p[root:] for p in missing])))
    nbytes = lay.chunk_nbytes

    def one(task: _Task) -> None:
        decoded = ready.get(task.path)
        if decoded is not None:
            settings.stats.add_reused()
        else:
            data = fetched[task.path]
            if data is None:  # no object: the fill value, as zarr reads it
                out[task.out_sel] = lay.fill
                settings.stats.add_missing()
                return
            try:
                decoded = _decode_object(lay, data, nbytes)
            except codecs.ChunkDamage as exc:
                raise _error(lay, task, exc) from exc
            settings.stats.add_read(memoryview(data).nbytes)
            settings.stats.add(nbytes, nbytes)
            if cache is not None:
                cache.keep_decoded(task.path, decoded)
        chunk = decoded.view(lay.stored).reshape(lay.chunks, order=lay.order)
        out[task.out_sel] = chunk[task.chunk_sel]

    pool.run(one, tasks, min(limit, len(tasks)))


def _decode_object(lay: Layout, data: Any, nbytes: int) -> np.ndarray:
    if lay.codec is not None:
        return codecs.decode(lay.codec, data, nbytes)
    size = memoryview(data).nbytes
    if size != nbytes:
        raise codecs.ChunkDamage(f"the object has {size} bytes, an uncompressed chunk {nbytes}")
    return np.frombuffer(data, dtype=np.uint8)


def _error(lay: Layout, task: _Task, exc: BaseException) -> ChunkReadError:
    what, zarr_too = "chunk", "zarr cannot read it either"
    if lay.shard is not None:
        shard = tuple(c // p for c, p in zip(task.coords, lay.shard.per_shard))
        what = f"the shard file of shard {shard}, holding chunk"
        # zarr reads some damaged shards (an empty file, an entry past the end) as the fill
        # value without a word.
        zarr_too = "zarr cannot read it either, or reads it as the fill value"
    return ChunkReadError(
        f"{task.path}: {what} {task.coords} of the {lay.where()} cannot be read: {exc}. "
        f"{zarr_too}; restore or rewrite that {'object' if lay.objects else 'file'} (a 0-byte "
        "or truncated file is what an interrupted copy or sync leaves behind).",
        task.path,
    )


def _load_inner_chunk(lay: Layout, task: _Task, nbytes: int) -> np.ndarray | None:
    """An inner chunk's bytes (as :func:`_load_chunk`) from its byte range in the shard file;
    None for the fill value."""
    if task.fd < 0:
        return None
    if lay.codec is None:
        if task.length != nbytes:
            raise codecs.ChunkDamage(f"its shard index gives an uncompressed inner chunk "
                                     f"{task.length} bytes, a chunk holds {nbytes}")  # fmt: skip
        dest = np.empty(nbytes, dtype=np.uint8)
        view = memoryview(dest)[task.first : task.stop]  # type: ignore[arg-type]
        _pread_into(task.fd, view, task.offset + task.first)
        settings.stats.add_read(task.stop - task.first)
        return dest
    data = shards.pread_exact(task.fd, task.length, task.offset)
    settings.stats.add_read(task.length)
    return codecs.decode(lay.codec, data, nbytes)


def _load_chunk(lay: Layout, task: _Task, nbytes: int) -> np.ndarray | None:
    """The chunk's bytes (uint8, ``nbytes``, at least the task's byte range filled), or None
    when there is no chunk: zarr's ``LocalStore`` reads a missing file, or a folder in its
    place, as no chunk (the fill value)."""
    try:
        fd = os.open(task.path, _OPEN_FLAGS)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # Linux opens a folder read-only without complaint
            return None
        size = info.st_size
        if lay.codec is None:
            if size != nbytes:
                raise codecs.ChunkDamage(
                    f"the file has {size} bytes, an uncompressed chunk {nbytes}"
                )
            # Only the needed range, read straight into fresh memory (untouched pages of
            # np.empty cost nothing).
            dest = np.empty(nbytes, dtype=np.uint8)
            _pread_into(fd, memoryview(dest)[task.first : task.stop], task.first)  # type: ignore[arg-type]
            settings.stats.add_read(task.stop - task.first)
            return dest
        # The whole file into a fresh bytes object: a decoder never sees another chunk's bytes.
        data = shards.pread_exact(fd, size, 0)
        settings.stats.add_read(size)
        return codecs.decode(lay.codec, data, nbytes)
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)


def _pread_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from the file at ``offset``."""
    got = 0
    while got < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[got:]], offset + got)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + got, os.SEEK_SET)
            data = os.read(fd, len(view) - got)
            n = len(data)
            view[got : got + n] = data
        if n == 0:
            raise codecs.ChunkDamage(f"the file ends after {offset + got} bytes (it changed "
                                     "while being read?)")  # fmt: skip
        got += n
