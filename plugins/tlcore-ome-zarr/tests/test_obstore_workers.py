"""Chunk reads through obstore in DataLoader workers (``TLCORE_S3_CLIENT``), against a real S3
server (moto on loopback) behind :class:`tlcore.io.relay.Relay`, which records each request's
client (User-Agent): the same batches as s3fs and as 0 workers, the parent never on obstore,
only chunk GETs from the workers."""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import torch

from tlcore.io import clients
from tlcore.io import prefetch as ahead
from tlcore.io.relay import Relay
from tlcore.training.datamodule import RandomTimelapseDatamodule

# Not imported here: a parent that has imported obstore forks workers that keep s3fs.
if importlib.util.find_spec("obstore") is None:
    pytest.skip("obstore is not installed", allow_module_level=True)

T = 6
SHAPE = (T, 1, 8, 64, 64)
CHUNKS = (1, 1, 8, 32, 32)
CROP = (8, 40, 40)  # spans 4 chunks at most starts
CHUNK_KEY = re.compile(r"/movie\.ome\.zarr/0/c/")


@pytest.fixture(scope="module")
def remote_movie(s3_movie: Callable[..., str]) -> str:
    return s3_movie("t-obstore-workers", SHAPE, CHUNKS, seed=9)


def _epoch(
    url: str, options: dict[str, Any], workers: int, relay: Relay
) -> tuple[list[dict[str, Any]], int]:
    """One epoch, and where the relay's log stood when the parent had opened and validated
    the image (the workers' requests come after)."""
    ahead.uninstall()
    frame = pd.DataFrame(
        {"path": [url] * T, "split": ["train"] * T, "start": range(T), "stop": range(1, T + 1)}
    )
    dm = RandomTimelapseDatamodule(
        frame, patch_shape=CROP, storage_options=options, num_workers=workers, batch_size=2,
        validate=True, seed=4, multiprocessing_context="fork" if workers else None,
    )  # fmt: skip
    dm.setup("fit")
    opened = len(relay.lines)
    out = [{"raw": b["raw"].clone(), "T": b["T"].clone()} for b in dm.train_dataloader()]
    ahead.uninstall()
    return out, opened


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x["raw"], y["raw"]) and torch.equal(x["T"], y["T"]) for x, y in zip(a, b)
    )


def _seen(relay: Relay, since: int, until: int | None = None) -> Counter[tuple[str, str, bool]]:
    """(method, client, chunk?) of the requests from ``since`` to ``until``."""
    return Counter(
        (line.split(" ")[0], agent, bool(CHUNK_KEY.search(line)))
        for line, agent in zip(relay.lines[since:until], relay.agents[since:until])
    )


# Real DataLoader workers against moto, three epochs (~15 s): in make test-slow.
@pytest.mark.slow
def test_two_obstore_workers_give_the_batches_of_s3fs_and_of_0_workers(
    s3_server: dict[str, Any], remote_movie: str, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = relay.options(s3_server)
    monkeypatch.setenv(clients.ENV, "obstore")
    since = len(relay.lines)
    reference, _ = _epoch(remote_movie, options, 0, relay)  # the parent: s3fs, even if asked
    assert len(reference) == T // 2
    parent = _seen(relay, since)
    assert parent and all(agent != "object_store" for _, agent, _ in parent), parent
    assert not clients._used_here

    since = len(relay.lines)
    got, opened = _epoch(remote_movie, options, 2, relay)  # its parent never used obstore
    assert _same(got, reference)
    parent = _seen(relay, since, opened)  # opening and validating
    assert parent and all(agent != "object_store" for _, agent, _ in parent), parent
    workers = _seen(relay, opened)
    # the workers (the image handed over) send only chunk GETs, all through obstore
    assert workers and set(workers) == {("GET", "object_store", True)}, workers
    assert not clients._used_here

    monkeypatch.setenv(clients.ENV, "s3fs")
    since = len(relay.lines)
    assert _same(_epoch(remote_movie, options, 2, relay)[0], reference)
    assert all(agent != "object_store" for _, agent, _ in _seen(relay, since))


# Real DataLoader workers against moto behind a throttling relay: in make test-slow.
@pytest.mark.slow
def test_throttled_obstore_reads_are_retried_by_tlcore(
    s3_server: dict[str, Any], remote_movie: str, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _ = _epoch(remote_movie, relay.options(s3_server), 0, relay)
    # 30% of reads answered 503 SlowDown. obstore's own retries are off (max_retries=0), so
    # the epoch completes only if tlcore retries each read (tlcore.io.remote.retry_async).
    throttling = Relay(str(s3_server["endpoint_url"]), throttle=0.3, seed=2)
    monkeypatch.setenv(clients.ENV, "obstore")
    try:
        got, opened = _epoch(remote_movie, throttling.options(s3_server), 2, throttling)
        assert throttling.throttled > 0
        agents = Counter(throttling.agents[opened:])
    finally:
        throttling.stop()
    assert _same(got, reference)
    assert set(agents) == {"object_store"}, agents
