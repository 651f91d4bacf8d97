"""Every remote TIFF byte-range read goes through :func:`fetch_ranges`, which looks first in the
process's :mod:`tlcore.io.prefetch` cache (filled by :func:`prefetch_ranges`).

One call fetches all the ranges a crop needs, concurrently (one :data:`Fetch` call: fsspec's
``cat_ranges``, or :func:`tlcore.io.objstore.cat_ranges` where the process reads S3 through
obstore), after merging ranges that lie close in the file into one request: neighbouring tiles
of a row, and the tiles of consecutive pages when a writer stores planes one after the other. A
request costs a round trip; the bytes between two ranges cost only bandwidth. So gaps are
bridged, smallest first, while the bytes on the wire (with each request's headers) stay within
:data:`MAX_OVERREAD` times the bytes needed (gaps up to :data:`FREE_GAP` are always bridged),
and merged requests are capped at :data:`MAX_REQUEST` bytes so that large crops are still
fetched by several requests at once.

Fetching ahead: :func:`prefetch_ranges` gets the ranges (tiles, strips, rows) that a future
read will ask for (the reader computes both from the same region, see
``TiffArrayReader.prefetch``) and keeps each range as its own cache entry, named
``"<uri>@<start>-<end>"`` (:func:`range_name`), fetched by the same merged requests a read
would send. Entries per range, not per request, so that a tile that several planned samples
need is fetched once: a later sample's prefetch finds it held (its use is extended to that
sample) and fetches only the ranges not yet held, and the reader may keep the tile decoded for
that sample (``PageReader``, :meth:`tlcore.io.prefetch.AheadCache.keep_decoded`). A range the
cache does not hold (not fetched ahead, a failed or dropped fetch, an evicted entry) is fetched
by the read; one in flight is awaited rather than sent twice.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from tlcore.io import prefetch as ahead

#: Fetches ``(starts, ends)`` byte ranges of one file, concurrently: the bytes of each, or the
#: exception of a range that failed in its place (fsspec's ``cat_ranges`` contract).
Fetch = Callable[[list[int], list[int]], list[Any]]

#: Gaps up to this many bytes are always bridged (an IFD between two pages' tiles).
FREE_GAP = 4 * 1024
#: Bytes on the wire at most this many times the bytes a crop needs, the issue's bound: the gaps
#: bridged (those up to :data:`FREE_GAP` included) and :data:`REQUEST_OVERHEAD` per request
#: count against it, and when some of the crop's tiles are held already (fetched for an earlier
#: planned sample), the rest may bridge up to the crop's bound. Every request costs the client
#: and the store CPU besides its round trip: in ``tlcore bench cloud --tiff`` (32x128x128 crops
#: of 256x256 zlib tiles, obstore, 4 workers, 30 ms) this sent 2.6-2.8 GETs per crop for
#: 1.05-1.10x the tiles' bytes, against 3.7-4.2 GETs and 0.93-0.99x with a bound of 2.9 on the
#: missing tiles alone (headers and IFDs uncounted), and 6.2 before tiles were shared.
MAX_OVERREAD = 3.0
#: Bytes a request costs on the wire besides its range (the response's status line and
#: headers: S3 sends 300-600): one request fewer saves them, so tiny tiles are merged more.
REQUEST_OVERHEAD = 512
#: A merged request is not grown past this many bytes (requests run concurrently).
MAX_REQUEST = 16 * 1024 * 1024


def plan_requests(
    ranges: list[tuple[int, int]],
    *,
    free_gap: int | None = None,
    max_overread: float | None = None,
    max_request: int | None = None,
    request_overhead: int | None = None,
    basis: int | None = None,
) -> list[tuple[int, int]]:
    """The (start, end) requests that cover ``ranges`` (offset, length), sorted.

    Overlapping and touching ranges always become one request; other gaps are bridged smallest
    first while the bytes on the wire (needed bytes, bridged gaps and ``request_overhead`` per
    request) stay within ``max_overread`` times the needed bytes and a request within
    ``max_request`` bytes (gaps up to ``free_gap`` bytes are bridged regardless, and count);
    each defaults to the module's constant of that name. ``basis``: the bytes the bound is
    relative to, when ``ranges`` are what is still missing of a crop whose other ranges are held
    already (default: the bytes of ``ranges``).
    """
    free_gap = FREE_GAP if free_gap is None else free_gap
    max_overread = MAX_OVERREAD if max_overread is None else max_overread
    max_request = MAX_REQUEST if max_request is None else max_request
    overhead = REQUEST_OVERHEAD if request_overhead is None else request_overhead
    spans: list[list[int]] = []
    for start, end in sorted((off, off + n) for off, n in ranges if n > 0):
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    if len(spans) < 2:
        return [(a, b) for a, b in spans]
    needed = sum(b - a for a, b in spans)
    # bytes of gaps that may be fetched, besides the requests' own overhead
    budget = max_overread * max(needed, basis or 0) - needed - overhead * len(spans)
    # bridging gap i joins spans i and i+1; a union-find over the chosen gaps
    order = sorted(range(len(spans) - 1), key=lambda i: spans[i + 1][0] - spans[i][1])
    parent = list(range(len(spans)))
    lo = [a for a, _ in spans]
    hi = [b for _, b in spans]

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in order:
        gap = spans[i + 1][0] - spans[i][1]
        a, b = root(i), root(i + 1)
        cost = gap - overhead  # the gap's bytes, less the headers of one request fewer
        if gap > free_gap and (cost > max(budget, 0) or hi[b] - lo[a] > max_request):
            continue
        budget -= cost
        parent[b] = a
        hi[a] = hi[b]
    return sorted({(lo[root(i)], hi[root(i)]) for i in range(len(spans))})


def range_name(uri: str, offset: int, length: int) -> str:
    """The :mod:`tlcore.io.prefetch` cache name of the range (``offset``, ``length``) of
    ``uri``: ``"<uri>@<start>-<end>"``."""
    return f"{uri}@{offset}-{offset + length}"


def fetch_ranges(fetch: Fetch, uri: str, ranges: list[tuple[int, int]]) -> list[Any]:
    """The bytes of each (offset, length) of ``uri``: those the process's prefetch cache holds
    (or is fetching: awaited), the others in one concurrent ``fetch`` of their merged requests
    (see :func:`plan_requests`); an exception in place of the bytes of a range whose request
    failed. The caller checks lengths (a short read: truncated)."""
    if not ranges:
        return []
    out: list[Any] = [None] * len(ranges)
    missing = list(range(len(ranges)))
    cache = ahead.active()
    if cache is not None:
        missing = []
        for i, (off, n) in enumerate(ranges):
            found, data = cache.lookup(range_name(uri, off, n))
            if found and data is not None:
                out[i] = data
            else:
                missing.append(i)
    if missing:
        basis = sum(n for _, n in set(ranges))
        for i, data in zip(missing, _fetch(fetch, [ranges[i] for i in missing], basis)):
            out[i] = data
    return out


def _fetch(fetch: Fetch, ranges: list[tuple[int, int]], basis: int) -> list[Any]:
    """Each range's bytes (or exception), from one ``fetch`` of their merged requests, within
    the overread bound of ``basis`` bytes (the crop's, held ranges included)."""
    requests = plan_requests(ranges, basis=basis)
    starts = [a for a, _ in requests]
    blocks = fetch(starts, [b for _, b in requests])
    out: list[Any] = []
    for off, n in ranges:
        i = bisect.bisect_right(starts, off) - 1
        block = blocks[i]
        if isinstance(block, BaseException):
            out.append(block)
        else:
            out.append(block[off - starts[i] : off - starts[i] + n])
    return out


def prefetch_ranges(
    fetch: Fetch, uri: str, ranges: list[list[tuple[int, int]]], until: int, lane: int = 0
) -> None:
    """Fetch ahead, into the process's :mod:`tlcore.io.prefetch` cache, each (offset, length)
    of ``ranges`` (one list per future :func:`fetch_ranges` call), kept until sample ``until``
    of ``lane`` is done; a range already held or in flight is not fetched again (it is kept
    until ``until`` too). The others go in one concurrent ``fetch`` of their merged requests
    (with the client's retries, as the read's); blocks until they are in. A range whose
    request fails is not kept: the read then makes its own request (and raises its own
    error)."""
    cache = ahead.active()
    if cache is None:
        return
    names: dict[str, tuple[int, int]] = {}
    for group in ranges:
        for off, n in group:
            if n > 0:
                names.setdefault(range_name(uri, off, n), (off, n))
    claimed = [name for name in names if cache.claim(name, until, lane) is not None]
    if not claimed:
        return
    basis = sum(n for _, n in names.values())  # the bound is the crops', held tiles included
    filled: set[str] = set()
    try:
        for name, data in zip(claimed, _fetch(fetch, [names[n] for n in claimed], basis)):
            failed = isinstance(data, BaseException)
            cache.fill(name, None if failed else bytes(data), ok=not failed)
            filled.add(name)
    finally:
        for name in claimed:  # never leave a read waiting on a fetch that died
            if name not in filled:
                cache.fill(name, None, ok=False)
