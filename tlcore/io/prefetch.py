"""A bounded, per-process cache of encoded bytes fetched ahead of the reads that need them.

A DataLoader worker knows which samples it makes next, so it can fetch their encoded chunks
(or tiles, or byte ranges) while it decodes the current one (:mod:`tlcore.training.prefetch`
plans it). The fetched bytes wait here until the worker's own read asks for them; the read
path of a remote store looks here first (``tlcore_ome_zarr``'s ``RemoteStore.get``), and any
other format's range fetch can do the same:

* :meth:`AheadCache.claim` before fetching ``name`` (a string that names the object and the
  byte range, e.g. ``"s3://b/x.zarr/0/c/0/0/0"`` or ``"s3://b/x.tif@1024-2048"``): a
  :class:`concurrent.futures.Future` to fetch into, or None when ``name`` is already held or
  being fetched (its use is then extended to ``until``);
* :meth:`AheadCache.fill` with the bytes (``bytes``, or any read-only object with the buffer
  protocol, such as a uint8 numpy array over a client's own buffer: kept as given, not
  copied; ``None`` after a failed fetch: nothing is kept and the read falls back to a normal
  request);
* :meth:`AheadCache.lookup` (or :meth:`AheadCache.lookup_async` from a coroutine) in the read
  path: ``(True, data)`` on a hit, waiting for a fetch of ``name`` in flight rather than
  sending a second request; ``(False, None)`` otherwise.

A decoder may then keep what it decoded from an entry in its place
(:meth:`AheadCache.keep_decoded`) when a later sample of the process also needs that object,
and the later read takes it (:meth:`AheadCache.lookup_decoded`): the object is fetched and
decoded once for both (``tlcore.decoders.zarrfast`` does this for remote zarr chunks).

Contract: the cache only changes timing, never bytes (the entries are exactly what a read of
``name`` returns, or what decoding it gives); it holds at most ``budget`` bytes (a fill that
does not fit is dropped and counted); an entry is kept until the sample with ordinal
``until`` is done (:meth:`AheadCache.release`), so what was consumed is evicted. One cache per
process (:func:`active`, :func:`install`); a forked child starts without one, and without the
parent's pending fetches or locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_BUDGET", "AheadCache", "AheadStats", "active", "install", "uninstall"]

#: Default bytes of fetched-ahead data each process may hold (the issue's "a few tens of MiB
#: per worker").
DEFAULT_BUDGET = 48 * 2**20
#: Seconds a read waits for a fetch of the same object already in flight before sending its
#: own request (a stalled prefetch never holds a read longer than this).
WAIT_S = 30.0


#: What an entry holds: ``bytes``, or a read-only object with the buffer protocol (a uint8 numpy
#: array over a client's own buffer); None for an object that does not exist.
Held = Any


@dataclass
class AheadStats:
    """Counters of one process's cache (read them in that process)."""

    fetched: int = 0  #: objects fetched ahead and kept
    fetched_bytes: int = 0
    failed: int = 0  #: fetches that failed (the read then made its own request)
    dropped: int = 0  #: fetched objects that did not fit the budget
    hits: int = 0  #: reads served from the cache
    waited: int = 0  #: reads that waited for a fetch in flight (counted in hits if it landed)
    evicted: int = 0  #: entries released unread (mispredicted or not needed after all)
    peak_bytes: int = 0  #: the most bytes held at once
    kept_decoded: int = 0  #: objects kept decoded for a later sample (keep_decoded)
    decoded_hits: int = 0  #: reads served an object decoded (lookup_decoded)


@dataclass
class _Entry:
    data: Held  # None: the object does not exist (a read returns "absent" too)
    until: int
    lane: int
    read: bool = False
    decoded: Any = None  # the object decoded (keep_decoded), in place of its bytes

    @property
    def nbytes(self) -> int:
        if self.decoded is not None:
            return int(self.decoded.nbytes)
        return _size(self.data)


def _size(data: Held) -> int:
    return memoryview(data).nbytes if data is not None else 0


class AheadCache:
    """Bytes fetched ahead, by name, within ``budget`` bytes (see the module docstring)."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        if int(budget) < 0:
            raise ValueError(f"the prefetch budget must be >= 0 bytes, got {budget}")
        self.budget = int(budget)
        self.used = 0
        self.stats = AheadStats()
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, tuple[Future[Held], int, int]] = {}
        self._begun: dict[int, int] = {}  # lane -> the sample its reads are making now
        self._cond = threading.Condition()

    # -- the fetching side ---------------------------------------------------------------------
    def claim(self, name: str, until: int, lane: int = 0) -> Future[Held] | None:
        """A future to fetch ``name`` into (complete it with :meth:`fill`), or None when it is
        held or already being fetched; either way it is now kept until sample ``until`` of
        ``lane`` is done (each prefetching dataset of a process numbers its samples in a lane
        of its own). Also None once that sample has begun (:meth:`begin`): its reads may
        already have asked for ``name``, and fetching it now could fetch it twice."""
        with self._cond:
            if until <= self._begun.get(lane, -1):
                return None
            entry = self._entries.get(name)
            if entry is not None:
                if entry.lane == lane:
                    entry.until = max(entry.until, until)
                return None
            pending = self._pending.get(name)
            if pending is not None:
                if pending[2] == lane:
                    self._pending[name] = (pending[0], max(pending[1], until), lane)
                return None
            future: Future[Held] = Future()
            self._pending[name] = (future, until, lane)
            return future

    def fill(self, name: str, data: Held, *, ok: bool = True) -> None:
        """The outcome of a claimed fetch: ``data`` (None with ``ok``: the object does not
        exist), or ``ok=False`` when the fetch failed (nothing is kept)."""
        with self._cond:
            future, until, lane = self._pending.pop(name, (None, 0, 0))
            size = _size(data)
            if not ok:
                self.stats.failed += 1
            elif self.used + size > self.budget:
                self.stats.dropped += 1
                ok = False
            else:
                self._entries[name] = _Entry(data, until, lane)
                self.used += size
                self.stats.fetched += 1
                self.stats.fetched_bytes += size
                self.stats.peak_bytes = max(self.stats.peak_bytes, self.used)
            self._cond.notify_all()
        if future is not None and not future.done():
            future.set_result(data if ok else None)

    def begin(self, ordinal: int, lane: int = 0) -> None:
        """Sample ``ordinal`` of ``lane`` starts its reads: no fetch for it (or an earlier
        one) starts from now on; fetches already in flight are awaited by its reads."""
        with self._cond:
            self._begun[lane] = max(self._begun.get(lane, -1), ordinal)

    def room(self) -> int:
        """Bytes still free."""
        with self._cond:
            return self.budget - self.used

    def wait_for_room(self, nbytes: int, timeout: float) -> bool:
        """Wait until ``nbytes`` fit beside what is held (True), or ``timeout`` seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self.used + nbytes <= self.budget, timeout)

    # -- the reading side ----------------------------------------------------------------------
    def lookup(self, name: str, wait_s: float = WAIT_S) -> tuple[bool, Held]:
        """``(True, data)`` when ``name`` is held (after waiting up to ``wait_s`` for a fetch
        of it in flight), else ``(False, None)``: the caller reads it itself."""
        with self._cond:
            pending = self._pending.get(name)
        if pending is not None:
            self.stats.waited += 1
            with contextlib.suppress(Exception):  # a stall or a failure: read it normally
                pending[0].result(timeout=wait_s)
        return self._hit(name)

    async def lookup_async(self, name: str, wait_s: float = WAIT_S) -> tuple[bool, Held]:
        """:meth:`lookup` for a coroutine: waits without blocking its event loop."""
        with self._cond:
            pending = self._pending.get(name)
        if pending is not None:
            self.stats.waited += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(pending[0]), wait_s)
        return self._hit(name)

    def lookup_now(self, name: str) -> tuple[bool, Held]:
        """:meth:`lookup` without waiting: ``(False, None)`` also while a fetch of ``name`` is
        in flight (await it with :meth:`lookup_async`, or read it). For a read that takes what
        is already held without a trip through its event loop."""
        return self._hit(name)

    def _hit(self, name: str) -> tuple[bool, Held]:
        with self._cond:
            entry = self._entries.get(name)
            if entry is None or entry.decoded is not None:  # decoded: no bytes held
                return False, None
            entry.read = True
            self.stats.hits += 1
            return True, entry.data

    # -- decoded objects -------------------------------------------------------------------------
    def lookup_decoded(self, name: str) -> Any | None:
        """The object ``name`` as a decoder left it (:meth:`keep_decoded`), else None. Does not
        wait: a fetch of it in flight lands as bytes, which :meth:`lookup` waits for."""
        with self._cond:
            entry = self._entries.get(name)
            if entry is None or entry.decoded is None:
                return None
            entry.read = True
            self.stats.decoded_hits += 1
            return entry.decoded

    def keep_decoded(self, name: str, decoded: Any) -> bool:
        """Hold ``decoded`` (a read-only numpy array: what decoding the bytes held for
        ``name`` gave) in place of those bytes when a sample after the one being made also
        needs ``name``, so that it is not decoded twice; True when kept. Not kept when no
        later sample needs it, or it does not fit the budget."""
        with self._cond:
            entry = self._entries.get(name)
            if entry is None or entry.decoded is not None or entry.data is None:
                return False
            if entry.until <= self._begun.get(entry.lane, -1):
                return False  # only the sample being made needs it: released after it
            grow = int(decoded.nbytes) - entry.nbytes
            if self.used + grow > self.budget:
                return False
            decoded.flags.writeable = False  # shared by the reads of several samples
            entry.decoded, entry.data = decoded, None
            self.used += grow
            self.stats.kept_decoded += 1
            self.stats.peak_bytes = max(self.stats.peak_bytes, self.used)
            return True

    def release(self, upto: int, lane: int | None = 0) -> None:
        """Sample ``upto`` of ``lane`` (and every one before it) is done: evict what they
        needed (``lane=None``: of every lane)."""
        with self._cond:
            done = [
                n for n, e in self._entries.items()
                if e.until <= upto and (lane is None or e.lane == lane)
            ]  # fmt: skip
            for name in done:
                entry = self._entries.pop(name)
                self.used -= entry.nbytes
                if not entry.read:
                    self.stats.evicted += 1
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop every entry (pending fetches keep running; their results are dropped)."""
        self.release(2**62, None)

    def __contains__(self, name: Hashable) -> bool:
        with self._cond:
            return name in self._entries

    def __len__(self) -> int:
        with self._cond:
            return len(self._entries)


_active: AheadCache | None = None
_active_pid = os.getpid()


def active() -> AheadCache | None:
    """This process's cache, or None when nothing fetches ahead here (a read then goes
    straight to the store)."""
    if _active_pid != os.getpid():
        return None
    return _active


def install(budget: int = DEFAULT_BUDGET) -> AheadCache:
    """This process's cache, made with ``budget`` bytes if it has none (a later, different
    budget replaces an empty cache; one holding data keeps its budget)."""
    global _active, _active_pid
    cache = active()
    if cache is None or (cache.budget != budget and not len(cache)):
        cache = AheadCache(budget)
        _active, _active_pid = cache, os.getpid()
    return cache


def uninstall() -> None:
    """Remove this process's cache: reads go straight to the store again."""
    global _active
    _active = None


def _after_fork() -> None:
    # A forked child must not see the parent's entries, its pending futures (the threads
    # that would complete them do not exist there) or a lock a parent's thread held.
    global _active, _active_pid
    _active, _active_pid = None, os.getpid()


os.register_at_fork(after_in_child=_after_fork)
