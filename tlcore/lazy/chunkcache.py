"""Decoded-chunk cache and read-amplification counting for the lazy path.

:func:`cached` rebuilds an image's dask array on a :class:`CachedReader`, which reads whole
storage chunks, keeps the decoded ones in a per-process LRU with a byte limit, and counts every
chunk it decodes. So several crops from one timepoint decode a shared chunk once, and
:data:`stats` gives the read amplification of a pipeline as counted (bytes decoded / bytes of the
crops :class:`tlcore.ComputeDaskd` produced), not estimated. ``max_bytes=0`` counts without
caching.

The wrapper is an :class:`tlcore.lazy.ArrayReader` itself, so it works with every reader plugin
and with any later fast path that turns a crop into one region read.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcore.lazy.daskarray import as_dask
from tlcore.lazy.reader import ArrayReader, Region, reader_of

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["CachedReader", "ChunkCache", "ReadCounter", "cache", "cached", "stats"]


class ReadCounter:
    """Process-wide counts: chunks and bytes decoded, cache hits, bytes of computed crops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.chunks_decoded = 0
            self.bytes_decoded = 0
            self.cache_hits = 0
            self.crops = 0
            self.crop_bytes = 0

    def decoded(self, nbytes: int) -> None:
        with self._lock:
            self.chunks_decoded += 1
            self.bytes_decoded += nbytes

    def hit(self) -> None:
        with self._lock:
            self.cache_hits += 1

    def crop(self, nbytes: int) -> None:
        """A crop of ``nbytes`` (in the stored dtype) was computed."""
        with self._lock:
            self.crops += 1
            self.crop_bytes += nbytes

    @property
    def amplification(self) -> float:
        """Bytes decoded / bytes of the crops (NaN before any crop)."""
        return self.bytes_decoded / self.crop_bytes if self.crop_bytes else float("nan")

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {
                "chunks_decoded": self.chunks_decoded,
                "bytes_decoded": self.bytes_decoded,
                "cache_hits": self.cache_hits,
                "crops": self.crops,
                "crop_bytes": self.crop_bytes,
                "amplification": self.amplification,
            }


class ChunkCache:
    """An LRU of decoded chunks that holds at most ``max_bytes``."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, block: np.ndarray) -> None:
        if block.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = block
            self.nbytes += block.nbytes
            while self.nbytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.nbytes -= old.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


#: This process's chunk cache (emptied in a forked child) and counters.
cache = ChunkCache()
stats = ReadCounter()


def _after_fork() -> None:
    global cache, stats
    cache = ChunkCache(cache.max_bytes)
    stats = ReadCounter()


os.register_at_fork(after_in_child=_after_fork)


class CachedReader(ArrayReader):
    """Reads ``inner`` one whole storage chunk at a time through the process's
    :data:`cache` (``use_cache=False``: counts only)."""

    def __init__(self, inner: ArrayReader, use_cache: bool = True) -> None:
        super().__init__(inner.shape, inner.dtype, inner.chunks)
        self.inner = inner
        self.use_cache = use_cache

    def identity(self) -> tuple[Any, ...]:
        return ("chunkcache", self.use_cache, *self.inner.identity())

    def _open(self) -> Any:
        return None  # the inner reader opens (and reopens after fork) its own handle

    def _read(self, handle: Any, region: Region) -> np.ndarray:
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        ranges = [
            range(s.start // k, (s.stop - 1) // k + 1) if s.stop > s.start else range(0)
            for s, k in zip(region, self.chunks)
        ]
        ident = self.inner.identity()
        for index in itertools.product(*ranges):
            box = tuple(
                slice(i * k, min((i + 1) * k, n)) for i, k, n in zip(index, self.chunks, self.shape)
            )
            key = (ident, index)
            block = cache.get(key) if self.use_cache else None
            if block is None:
                block = self.inner[box]
                stats.decoded(block.nbytes)
                if self.use_cache:
                    cache.put(key, block)
            else:
                stats.hit()
            src = tuple(
                slice(max(r.start, b.start) - b.start, min(r.stop, b.stop) - b.start)
                for r, b in zip(region, box)
            )
            dst = tuple(
                slice(max(r.start, b.start) - r.start, min(r.stop, b.stop) - r.start)
                for r, b in zip(region, box)
            )
            out[dst] = block[src]
        return out


def cached(array: da.Array, max_bytes: int | None = None) -> da.Array:
    """``array`` (a 5-D TCZYX reader array) read through the chunk cache; ``max_bytes`` sets
    this process's cache limit (0: count decoded chunks, cache nothing). An array not built on
    an :class:`ArrayReader` comes back unchanged."""
    reader = reader_of(array)
    if reader is None:
        return array
    if max_bytes is not None:
        cache.max_bytes = int(max_bytes)
    wrapped = CachedReader(reader, use_cache=cache.max_bytes > 0)
    return as_dask(wrapped, chunks=tuple(c[0] for c in array.chunks))
