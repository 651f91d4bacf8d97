"""The switches (environment variables) and the process-wide decode counters."""

from __future__ import annotations

import os
import threading

from tlcore.lazy import cpu

__all__ = [
    "PARTIAL_ENV",
    "THREADS_ENV",
    "DecodeStats",
    "default_threads",
    "partial_enabled",
    "stats",
    "threads_setting",
]

THREADS_ENV = "TLCORE_ZARRFAST_THREADS"
PARTIAL_ENV = "TLCORE_ZARRFAST_PARTIAL"


def default_threads() -> int:
    """This process's share of the cores (:func:`tlcore.lazy.cpu.decode_threads`): all of
    them, or cores / workers in a DataLoader worker set up by tlcore."""
    return cpu.decode_threads()


def threads_setting() -> int:
    """``TLCORE_ZARRFAST_THREADS``, else :func:`default_threads`."""
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
    """Whether an uncompressed chunk is read only as far as a region needs
    (``TLCORE_ZARRFAST_PARTIAL``, on unless ``0``/``false``/``no``/``off``). Compressed chunks
    are always decoded whole, so that every check zarr's decode makes runs."""
    raw = os.environ.get(PARTIAL_ENV, "1").strip().lower()
    return raw not in ("0", "false", "no", "off")


class DecodeStats:
    """Process-wide counts of the chunks this package read, and of the bytes it decoded
    against the bytes whole decoding would have cost (for benchmarks and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.chunks = 0  # chunk files read (missing ones not counted)
            self.missing = 0  # chunks read as the fill value
            self.partial = 0  # chunks read only in part (uncompressed ones)
            self.decoded_bytes = 0  # bytes decoded (or read, uncompressed)
            self.chunk_bytes = 0  # bytes decoding every read chunk whole would give
            self.read_bytes = 0  # bytes read from chunk and shard files (shard indexes too)
            self.reused = 0  # chunks kept decoded for a later sample (tlcore.io.prefetch)

    def add(self, decoded: int, whole: int) -> None:
        with self._lock:
            self.chunks += 1
            self.partial += decoded < whole
            self.decoded_bytes += decoded
            self.chunk_bytes += whole

    def add_read(self, n: int) -> None:
        with self._lock:
            self.read_bytes += n

    def add_reused(self) -> None:
        with self._lock:
            self.reused += 1

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
                "read_bytes": self.read_bytes,
                "reused": self.reused,
            }

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent's thread may have held it at fork time


#: What every :class:`~tlcore.decoders.zarrfast.FastZarrArray` in this process decoded.
stats = DecodeStats()
os.register_at_fork(after_in_child=stats._after_fork_in_child)
