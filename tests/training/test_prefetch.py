"""Fetching the next samples' chunks ahead (:mod:`tlcore.training.prefetch`) against a real S3
server (moto on loopback) behind :class:`tlcore.io.relay.Relay`, which counts every request:
the same batches with 0, 2 and 8 workers, prefetch on or off; no chunk fetched twice; the
cache within its budget; a failing prefetch changes nothing."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from tlcore.io import prefetch as ahead
from tlcore.io.relay import Relay
from tlcore.training.datamodule import RandomTimelapseDatamodule

T = 8
SHAPE = (T, 1, 8, 64, 64)
CHUNKS = (1, 1, 8, 32, 32)  # 4 chunks per timepoint
CROP = (8, 24, 24)
CHUNK_GET = re.compile(r"GET /[^/]+/movie\.ome\.zarr/0/c/")


@pytest.fixture(scope="module")
def remote_movie(s3_movie: Callable[..., str]) -> str:
    return s3_movie("t-prefetch", SHAPE, CHUNKS, seed=5)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    ahead.uninstall()
    yield
    ahead.uninstall()


def _epoch(url: str, options: dict[str, Any], workers: int, prefetch: bool,
           **kwargs: Any) -> list[dict[str, Any]]:  # fmt: skip
    """One epoch; one row per timepoint, so each sample reads a timepoint of its own and no
    two samples share a chunk."""
    frame = pd.DataFrame(
        {"path": [url] * T, "split": ["train"] * T, "start": range(T), "stop": range(1, T + 1)}
    )
    dm = RandomTimelapseDatamodule(
        frame, patch_shape=CROP, storage_options=options, num_workers=workers, batch_size=2,
        validate=False, prefetch=prefetch, seed=3, multiprocessing_context="fork"
        if workers else None, **kwargs,
    )  # fmt: skip
    dm.setup("fit")
    return [{"raw": b["raw"].clone(), "T": b["T"].clone()} for b in dm.train_dataloader()]


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x["raw"], y["raw"]) and torch.equal(x["T"], y["T"]) for x, y in zip(a, b)
    )


def _chunk_gets(relay: Relay, since: int) -> Counter[str]:
    return Counter(line for line in relay.lines[since:] if CHUNK_GET.search(line))


def test_the_same_batches_with_0_2_and_8_workers_prefetch_on_and_off(
    s3_server: dict[str, Any], remote_movie: str, relay: Relay
) -> None:
    options = relay.options(s3_server)
    reference = _epoch(remote_movie, options, 0, prefetch=False)
    assert len(reference) == T // 2
    for workers in (0, 2, 8):
        since = len(relay.lines)
        got = _epoch(remote_movie, options, workers, prefetch=True)
        assert _same(got, reference), f"{workers} workers, prefetch on"
        gets = _chunk_gets(relay, since)
        assert gets and max(gets.values()) == 1, gets  # prefetch and read never both GET
    for workers in (2, 8):
        assert _same(_epoch(remote_movie, options, workers, prefetch=False), reference)


def test_a_prefetched_chunk_is_fetched_once_and_read_from_the_cache(
    s3_server: dict[str, Any], remote_movie: str, relay: Relay
) -> None:
    options = relay.options(s3_server)
    _epoch(remote_movie, options, 0, prefetch=False)  # opens the store: metadata read here
    since = len(relay.lines)
    _epoch(remote_movie, options, 0, prefetch=True)
    gets = _chunk_gets(relay, since)
    stats = ahead.active().stats  # type: ignore[union-attr]
    assert max(gets.values()) == 1, gets
    assert stats.fetched > 0 and stats.failed == 0
    # every chunk fetched ahead was read from the cache, none went unread (the others, the
    # first sample's and any the thread was too late for, were read by the sample itself)
    assert stats.hits == stats.fetched and stats.evicted == 0


def test_the_cache_stays_within_its_budget(
    s3_server: dict[str, Any], remote_movie: str, relay: Relay
) -> None:
    options = relay.options(s3_server)
    reference = _epoch(remote_movie, options, 0, prefetch=False)
    chunk = 8 * 32 * 32 * 2  # an upper bound of one stored chunk (uint16)
    budget = 3 * chunk
    got = _epoch(remote_movie, options, 0, prefetch=True, prefetch_bytes=budget)
    stats = ahead.active().stats  # type: ignore[union-attr]
    assert _same(got, reference)
    assert stats.fetched > 0 and 0 < stats.peak_bytes <= budget


def test_a_failing_prefetch_does_not_fail_or_change_the_epoch(
    s3_server: dict[str, Any], remote_movie: str
) -> None:
    reference = _epoch(remote_movie, s3_server, 0, prefetch=False)
    # A relay that answers 40% of reads with 503 SlowDown: a prefetch tries once and gives up,
    # the sample's own read retries until it gets the bytes.
    throttling = Relay(str(s3_server["endpoint_url"]), throttle=0.4, seed=11)
    try:
        got = _epoch(remote_movie, throttling.options(s3_server), 0, prefetch=True)
        assert throttling.throttled > 0
    finally:
        throttling.stop()
    stats = ahead.active().stats  # type: ignore[union-attr]
    assert stats.failed > 0
    assert _same(got, reference)


def test_the_switch(remote_movie: str, synthetic_store: Callable[..., Path]) -> None:
    from tlcore.sampling.manifest import ManifestRow
    from tlcore.training.dataset import TimelapseDataset

    def rows(path: str) -> list[ManifestRow]:
        return [ManifestRow(split="train", row=0, origin="test", path=path)]

    local = str(synthetic_store(shape=(2, 1, 1, 8, 8), chunks=(1, 1, 1, 8, 8)))
    assert TimelapseDataset(rows(remote_movie), patch_shape=(1, 4, 4)).prefetch
    assert not TimelapseDataset(rows(local), patch_shape=(1, 4, 4)).prefetch
    assert not TimelapseDataset(rows(remote_movie), patch_shape=(1, 4, 4), prefetch=False).prefetch
    with pytest.raises(ValueError, match="prefetch_bytes"):
        TimelapseDataset(rows(local), prefetch_bytes=-1)


def test_a_worker_knows_the_positions_it_makes_next() -> None:
    from tlcore.training.prefetch import LoaderPlan, Prefetcher

    class Dataset:  # what the planner reads of a dataset before it plans a sample: nothing
        pass

    # rank 1 of 2: positions 1, 3, 5, ... (index k is position 1 + 2k); batches of 2; resumed
    # at index 2 of epoch 4; 3 workers deal batches round-robin
    plan = LoaderPlan(batch_size=2, length=30, rank=1, replicas=2, epoch=4, skip=2)
    ahead_ = Prefetcher(Dataset(), plan, budget=1)
    ahead_.workers = 3
    assert ahead_.begin(4, 3) is None  # index 1: skipped by the resume, not served
    ordinal = ahead_.begin(4, 5)  # index 2: the first of batch 0 (indices 2, 3)
    assert ordinal == 4 * 15 + 2
    # the rest of batch 0, then batches 3 (indices 8, 9) and 6 (14, the last)
    assert ahead_.upcoming() == [(4, 3), (4, 8), (4, 9), (4, 14)]
    assert [ahead_.position(i) for _, i in ahead_.upcoming()] == [7, 17, 19, 29]
    assert ahead_.begin(5, 1) == 5 * 15  # the next epoch: no skip, batch 0 is indices 0, 1
    assert ahead_.upcoming()[:3] == [(5, 1), (5, 6), (5, 7)]
    assert ahead_.begin(4, 4) is None  # not this rank's position
    ahead_.stop()


def test_the_planned_boxes_are_the_samples_boxes(synthetic_store: Callable[..., Path]) -> None:
    """The thread's copy of the pipeline, seeded as the sample is, picks the same box: here
    MONAI's own random crop on the lazy array, as in the example configs."""
    from monai.transforms import Compose, RandFlipd, RandSpatialCropd

    from tlcore.sampling.manifest import ManifestRow
    from tlcore.training.dataset import TimelapseDataset
    from tlcore.training.prefetch import LoaderPlan, Prefetcher
    from tlcore.transforms import ComputeDaskd, LoadLazyd

    store = synthetic_store(shape=(4, 1, 16, 64, 64), chunks=(1, 1, 8, 32, 32))
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandSpatialCropd(keys="raw", roi_size=(8, 24, 24), random_size=False),
        ComputeDaskd(keys="raw", dtype="float32"),
        RandFlipd(keys="raw", prob=0.5),
    ])  # fmt: skip
    row = ManifestRow(split="train", row=0, origin="test", path=str(store))
    dataset = TimelapseDataset([row], pipeline, samples_per_epoch=6, prefetch=False)
    planner = Prefetcher(dataset, LoaderPlan(batch_size=1, length=6), budget=1)
    for position in range(6):
        [(reader, regions)] = planner.reads(1, position)
        meta = dataset[(1, position)]["raw_meta"]
        t, _, z, y, x = regions[0]
        assert t.start == meta["timepoints"] and reader.shape == (4, 1, 16, 64, 64)
        assert (z.start, y.start, x.start) == meta["crop_start"]
        assert (z.stop - z.start, y.stop - y.start, x.stop - x.start) == meta["crop_size"]


def test_a_pipeline_with_a_users_transform_before_the_read_is_not_planned() -> None:
    """A transform tlcore does not know may draw from numpy's global random state: running it
    ahead in another thread would change the real sample's draws, so nothing is planned."""
    import numpy as np
    from monai.transforms import Compose, Lambdad, RandSpatialCropd

    from tlcore.training.prefetch import _pipeline_prefix
    from tlcore.transforms import ComputeDaskd, LoadLazyd

    class Jitter:
        def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "shift": np.random.randint(4)}

    crop = RandSpatialCropd(keys="raw", roi_size=(8, 24, 24), random_size=False)
    known = Compose([LoadLazyd(keys="raw"), crop, ComputeDaskd(keys="raw")])
    assert _pipeline_prefix(known) is not None
    for user in (Jitter(), Lambdad(keys="raw", func=lambda x: x)):
        steps = [LoadLazyd(keys="raw"), user, crop, ComputeDaskd(keys="raw")]
        assert _pipeline_prefix(Compose(steps)) is None
    after = Compose([LoadLazyd(keys="raw"), crop, ComputeDaskd(keys="raw"), Jitter()])
    assert _pipeline_prefix(after) is not None  # only the steps before the read run ahead


def test_only_a_compose_that_runs_its_steps_in_order_is_planned() -> None:
    """OneOf, SomeOf and RandomOrder are Composes whose steps do not all run, or not in order:
    running their steps before ComputeDaskd one after the other would plan boxes the sample
    never reads. A Compose subclass that keeps Compose's call is still planned."""
    from monai.transforms import Compose, OneOf, RandomOrder, SomeOf

    from tlcore.training.prefetch import _pipeline_prefix
    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    def steps() -> list[Any]:
        return [LoadLazyd(keys="raw"), RandLazyCropd(keys="raw", roi_size=(8, 24, 24)),
                ComputeDaskd(keys="raw")]  # fmt: skip

    class Named(Compose):  # type: ignore[misc]
        """A user's Compose with a name of its own and Compose's call."""

    assert _pipeline_prefix(Compose(steps())) is not None
    planned = _pipeline_prefix(Named(steps()))
    assert planned is not None and len(planned[1]) == 2
    for kind in (OneOf, SomeOf, RandomOrder):
        assert _pipeline_prefix(kind(steps())) is None, kind.__name__
