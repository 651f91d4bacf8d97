"""The cache of fetched-ahead bytes (:mod:`tlcore.io.prefetch`): its budget, its eviction, a read
that waits for a fetch in flight instead of sending a second request, and a fresh cache in a
forked child."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from tlcore.io import prefetch as ahead


def _fetch(cache: ahead.AheadCache, name: str, data: bytes, until: int, lane: int = 0) -> bool:
    future = cache.claim(name, until, lane)
    if future is None:
        return False
    cache.fill(name, data)
    return True


def test_the_cache_keeps_to_its_budget_and_evicts_what_was_used() -> None:
    cache = ahead.AheadCache(budget=100)
    assert _fetch(cache, "a", b"x" * 60, until=1)
    assert not _fetch(cache, "a", b"x" * 60, until=3)  # held: not fetched again, kept longer
    assert _fetch(cache, "b", b"y" * 60, until=2)  # does not fit: dropped, not kept
    assert cache.used == 60 and "b" not in cache and cache.stats.dropped == 1
    assert cache.lookup("a") == (True, b"x" * 60)
    assert cache.lookup("b") == (False, None)
    cache.release(2)
    assert "a" in cache  # needed by sample 3 too
    cache.release(3)
    assert len(cache) == 0 and cache.used == 0 and cache.stats.peak_bytes == 60
    assert cache.stats.evicted == 0  # "a" was read before it was released
    _fetch(cache, "c", b"z", until=4, lane=7)
    cache.release(10, lane=0)  # another dataset's samples: not these
    assert "c" in cache
    cache.release(4, lane=7)
    assert "c" not in cache and cache.stats.evicted == 1  # fetched, never read


def test_an_absent_object_and_a_failed_fetch() -> None:
    cache = ahead.AheadCache(budget=10)
    future = cache.claim("missing", 1)
    assert future is not None
    cache.fill("missing", None)  # the store said: no such object
    assert cache.lookup("missing") == (True, None)
    future = cache.claim("broken", 1)
    assert future is not None
    cache.fill("broken", None, ok=False)  # the fetch failed: the read makes its own request
    assert cache.lookup("broken") == (False, None) and cache.stats.failed == 1
    assert future.done()


def test_a_read_waits_for_the_fetch_in_flight() -> None:
    cache = ahead.AheadCache()
    assert cache.claim("k", 1) is not None
    threading.Timer(0.2, cache.fill, ("k", b"data")).start()
    assert cache.lookup("k") == (True, b"data")
    assert cache.claim("j", 1) is not None
    threading.Timer(0.2, cache.fill, ("j", b"more")).start()
    assert asyncio.run(cache.lookup_async("j")) == (True, b"more")
    assert cache.stats.waited == 2 and cache.stats.hits == 2


def test_a_buffer_is_held_as_given_and_lookup_now_never_waits() -> None:
    import numpy as np

    cache = ahead.AheadCache(budget=1000)
    chunk = np.frombuffer(b"\x01\x02" * 300, dtype=np.uint8)  # read-only, like a client's
    assert cache.claim("a", 1) is not None
    cache.fill("a", chunk)
    assert cache.used == 600  # its bytes, whatever the object
    held, data = cache.lookup_now("a")
    assert held and data is chunk  # not copied
    assert cache.claim("b", 1) is not None  # in flight
    assert cache.lookup_now("b") == (False, None)
    assert cache.stats.waited == 0  # did not wait for the fetch in flight
    cache.fill("b", memoryview(b"xyz"))
    assert cache.lookup_now("b")[0] and cache.used == 603
    assert cache.lookup_now("never") == (False, None) and cache.stats.hits == 2


def test_room_is_waited_for() -> None:
    cache = ahead.AheadCache(budget=10)
    _fetch(cache, "a", b"x" * 8, until=1)
    assert not cache.wait_for_room(5, 0.05)
    threading.Timer(0.1, cache.release, (1,)).start()
    started = time.monotonic()
    assert cache.wait_for_room(5, 5)
    assert time.monotonic() - started < 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_has_no_cache() -> None:
    cache = ahead.install(1000)
    try:
        assert cache.claim("pending", 1) is not None  # a fetch in flight at fork time
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: nothing inherited, a fresh cache on demand
            ok = ahead.active() is None and ahead.install(5).budget == 5
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1) == b"1"
        assert ahead.active() is cache
    finally:
        cache.fill("pending", None, ok=False)
        ahead.uninstall()


def test_an_object_a_later_sample_needs_is_kept_decoded_within_the_budget() -> None:
    import numpy as np

    cache = ahead.AheadCache(budget=150)
    _fetch(cache, "a", b"x" * 40, until=1)  # only sample 1 needs it
    _fetch(cache, "b", b"y" * 40, until=2)  # samples 1 and 2 (claimed by both)
    cache.begin(1)
    decoded = np.arange(80, dtype=np.uint8)
    assert not cache.keep_decoded("a", decoded.copy())  # released after this sample anyway
    assert cache.keep_decoded("b", decoded)
    assert cache.used == 40 + 80 and cache.stats.kept_decoded == 1
    assert not decoded.flags.writeable  # shared by the reads of two samples
    assert cache.lookup("b") == (False, None)  # no bytes held any more: a read fetches them
    assert cache.lookup_decoded("a") is None
    found = cache.lookup_decoded("b")
    assert found is decoded and cache.stats.decoded_hits == 1
    _fetch(cache, "c", b"z" * 20, until=3)
    cache.begin(2)
    assert not cache.keep_decoded("c", np.zeros(200, np.uint8))  # over the budget: kept as bytes
    assert cache.lookup("c") == (True, b"z" * 20)
    cache.release(1)
    assert cache.used == 80 + 20
    cache.release(3)
    assert cache.used == 0 and len(cache) == 0
