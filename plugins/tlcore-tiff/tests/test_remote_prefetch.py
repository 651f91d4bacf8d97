"""Fetching a remote TIFF's tiles ahead (``TiffArrayReader.prefetch`` into the process's
:mod:`tlcore.io.prefetch` cache) against a real S3 server (moto on loopback) behind
:class:`tlcore.io.relay.Relay`, which counts every request: a prefetched crop's read sends no
request; a failed prefetch leaves the read to fetch its own bytes; an epoch through the
datamodule gives the same batches with prefetch on or off, 0 or 2 workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlcore import Source
from tlcore.io import prefetch as ahead
from tlcore.io.relay import Relay
from tlcore_tiff.array import TiffArrayReader
from tlcore_tiff.meta import file_meta

T, Z, Y, X = 4, 4, 64, 64
TILE = 32
# a TCZYX region (five slices, as the planner passes them): 3 pages x 4 tiles
BOX = (slice(1, 2), slice(0, 1), slice(1, 4), slice(10, 50), slice(20, 60))


@pytest.fixture(scope="module")
def movie(tiled_movie: Callable[..., tuple[Path, np.ndarray]]) -> tuple[Path, np.ndarray]:
    return tiled_movie("p.ome.tif", (T, 1, Z, Y, X), seed=8, tile=TILE)


@pytest.fixture
def remote(upload: Callable[[Path], str], movie: tuple[Path, np.ndarray]) -> str:
    return upload(movie[0])


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    ahead.uninstall()
    yield
    ahead.uninstall()


def _reader(url: str, options: dict[str, Any]) -> TiffArrayReader:
    source = Source.from_any(url, options)
    reader = TiffArrayReader(source, "ome", file_meta(source, "ome").scenes[0], 0)
    reader.read((0, slice(0, 1), slice(0, 1), slice(0, 4), slice(0, 4)))  # opens the file
    return reader


def _gets(relay: Relay, since: int) -> int:
    return sum(line.startswith("GET ") for line in relay.lines[since:])


def test_a_prefetched_crop_is_read_without_a_request(
    s3_server: dict[str, Any], remote: str, relay: Relay, movie: tuple[Path, np.ndarray]
) -> None:
    reader = _reader(remote, relay.options(s3_server))
    since = len(relay.lines)
    expected = reader.read(BOX)  # what the crop costs without prefetch
    cold = _gets(relay, since)
    np.testing.assert_array_equal(expected, movie[1][BOX])
    cache = ahead.install()
    since = len(relay.lines)
    reader.prefetch([BOX], until=3, lane=1)
    assert _gets(relay, since) == cold > 0  # the prefetch sends the read's requests, no more
    since = len(relay.lines)
    np.testing.assert_array_equal(reader.read(BOX), expected)
    assert _gets(relay, since) == 0, relay.lines[since:]  # every request found in the cache
    # one entry per tile (3 pages x 4 tiles), fetched by the read's own merged requests
    assert cache.stats.hits == cache.stats.fetched == 12 and cache.stats.failed == 0
    reader.prefetch([BOX], until=3, lane=1)  # already held: nothing sent again
    assert _gets(relay, since) == 0
    cache.release(3, 1)
    assert len(cache) == 0 and cache.stats.evicted == 0


def test_a_tile_two_planned_samples_share_is_fetched_once_and_decoded_once(
    s3_server: dict[str, Any], remote: str, relay: Relay, movie: tuple[Path, np.ndarray]
) -> None:
    reader = _reader(remote, relay.options(s3_server))
    # the same 3 pages; the second box's columns 30:60 lie in the first box's two tile
    # columns, and its rows 40:64 in its second tile row: its 6 tiles are all the first's
    first = BOX
    second = (slice(1, 2), slice(0, 1), slice(1, 4), slice(40, 64), slice(30, 60))
    cache = ahead.install()
    since = len(relay.lines)
    reader.prefetch([first], until=1, lane=1)
    fetched = cache.stats.fetched
    assert fetched == 12 and _gets(relay, since) > 0
    since = len(relay.lines)
    reader.prefetch([second], until=2, lane=1)  # held already: only kept longer
    assert _gets(relay, since) == 0 and cache.stats.fetched == fetched
    cache.begin(1, lane=1)
    np.testing.assert_array_equal(reader.read(first), movie[1][first])
    assert cache.stats.kept_decoded == 6  # the second box's tiles, decoded for it
    cache.release(1, lane=1)
    assert len(cache) == 6
    cache.begin(2, lane=1)
    since = len(relay.lines)
    np.testing.assert_array_equal(reader.read(second), movie[1][second])
    assert _gets(relay, since) == 0
    assert cache.stats.decoded_hits == 6 and cache.stats.hits == 12
    cache.release(2, lane=1)
    assert len(cache) == 0 and cache.used == 0


def test_a_failed_prefetch_leaves_the_read_its_own_requests(
    s3_server: dict[str, Any], remote: str, relay: Relay, movie: tuple[Path, np.ndarray]
) -> None:
    # Every request through this relay is answered 503 SlowDown: the prefetch (one attempt,
    # no botocore retries here) fails; the same file read through the working relay then
    # fetches its own bytes (the cache names the object, not the endpoint).
    failing = Relay(str(s3_server["endpoint_url"]), throttle=1.0, seed=3)
    try:
        options = failing.options(s3_server)
        options["config_kwargs"] = {"retries": {"total_max_attempts": 1, "mode": "standard"}}
        source = Source.from_any(remote, options)
        broken = TiffArrayReader(source, "ome", file_meta(Source.from_any(
            remote, relay.options(s3_server)), "ome").scenes[0], 0)  # fmt: skip
        cache = ahead.install()
        broken.prefetch([BOX], until=2, lane=1)
        assert failing.throttled > 0
    finally:
        failing.stop()
    assert cache.stats.failed > 0 and cache.stats.fetched == 0 and len(cache) == 0
    reader = _reader(remote, relay.options(s3_server))
    since = len(relay.lines)
    np.testing.assert_array_equal(reader.read(BOX), movie[1][BOX])
    assert _gets(relay, since) > 0 and cache.stats.hits == 0


def _epoch(url: str, options: dict[str, Any], workers: int, prefetch: bool) -> list[Any]:
    import pandas as pd

    from tlcore.training.datamodule import RandomTimelapseDatamodule

    frame = pd.DataFrame(
        {"path": [url] * T, "split": ["train"] * T, "start": range(T), "stop": range(1, T + 1)}
    )
    dm = RandomTimelapseDatamodule(
        frame, patch_shape=(3, 40, 40), storage_options=options, num_workers=workers,
        batch_size=2, validate=False, prefetch=prefetch, seed=4,
        multiprocessing_context="fork" if workers else None,
    )  # fmt: skip
    dm.setup("fit")
    return [(b["raw"].clone(), b["T"].clone()) for b in dm.train_dataloader()]


def test_an_epoch_is_the_same_with_prefetch_on_and_off(
    s3_server: dict[str, Any], remote: str, relay: Relay
) -> None:
    pytest.importorskip("torch")
    import torch

    options = relay.options(s3_server)
    since = len(relay.lines)
    reference = _epoch(remote, options, 0, prefetch=False)
    without = _gets(relay, since)
    assert len(reference) == T // 2
    since = len(relay.lines)
    got = _epoch(remote, options, 0, prefetch=True)
    stats = ahead.active().stats  # type: ignore[union-attr]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, reference))
    # what was fetched ahead was each sample's own requests: all of it read, none sent twice
    assert stats.fetched > 0 and stats.hits == stats.fetched and stats.evicted == 0
    assert _gets(relay, since) <= without
    gets = {}
    for prefetch in (True, False):
        since = len(relay.lines)
        got = _epoch(remote, options, 2, prefetch=prefetch)
        gets[prefetch] = _gets(relay, since)
        assert len(got) == len(reference)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(got, reference)), f"2 workers, prefetch {prefetch}"  # fmt: skip
    # the workers' reads found what their prefetch fetched: no range was fetched twice (the
    # samples share no tile, so an unused prefetch would show as extra GETs)
    assert 0 < gets[True] <= gets[False], gets
