"""Fetching the next samples' encoded chunks while the current one is decoded.

A sample is a pure function of ``(seed, split, epoch, position)``, and the DataLoader hands a
worker whole batches in a fixed order (batch ``b`` of the rank's positions goes to worker
``b mod num_workers``). So a worker that is making position ``p`` knows the positions it makes
next. :class:`Prefetcher` runs, in one background thread per process, the sample's draw and
its pipeline up to the first :class:`~tlcore.transforms.ComputeDaskd` on a private copy of the
transforms, seeded exactly as the real sample will be, to learn each coming sample's reader and
box (nothing is read: the lazy array only plans its read), and asks the reader to fetch the
encoded objects of that box ahead (``reader.prefetch(regions, until, lane)``; the OME-Zarr
plugin's remote stores and the TIFF plugin's remote files implement it) into the process's
:mod:`tlcore.io.prefetch` cache, within its byte budget. Decoding stays in the worker's own
read, which finds the bytes there.

It never changes a pixel or a random draw: the real sample is made exactly as without it (its
reads return the same bytes, earlier), the copy's random states are its own, and a prefetch that
fails or guesses wrong only costs the read its usual request.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import torch

from tlcore.io import prefetch as ahead

_log = logging.getLogger("tlcore")

#: Samples planned ahead of the current one at most (the byte budget usually binds first).
MAX_AHEAD = 16
#: Samples whose objects are fetched at once.
FETCH_THREADS = 4
#: Seconds without a new sample after which the thread ends and its cache entries are dropped.
IDLE_S = 10.0

_lanes = iter(range(1, 2**62))


@dataclass(frozen=True)
class LoaderPlan:
    """What a dataset needs to know of the DataLoader that reads it to tell the positions each
    worker makes next: the batch size, this rank's share of the epoch and where a resumed epoch
    starts (``skip`` positions of ``epoch``)."""

    batch_size: int
    length: int
    rank: int = 0
    replicas: int = 1
    epoch: int = 0
    skip: int = 0


def _pipeline_prefix(transforms: Any) -> tuple[Any, list[Any]] | None:
    """A private copy of ``transforms`` (a MONAI ``Compose``) and its steps before the first
    ``ComputeDaskd``: what decides a sample's reader and box without reading. None when the
    pipeline is not a ``Compose`` that runs its steps in order (not ``OneOf``, ``SomeOf``,
    ``RandomOrder``) with a top-level ``ComputeDaskd``."""
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, LoadLazyd

    if not isinstance(transforms, Compose) or type(transforms).__call__ is not Compose.__call__:
        # OneOf, SomeOf, RandomOrder (Compose subclasses) and other calls of their own do
        # not run their steps in order: the prefix would plan boxes the sample never reads.
        return None
    steps = transforms.transforms
    at = next((i for i, t in enumerate(steps) if isinstance(t, ComputeDaskd)), None)
    if at is None or at == 0:
        return None
    unknown = [t for t in steps[:at] if not _draws_privately(t)]
    if unknown:
        # A transform of unknown origin may draw from numpy's or Python's global random
        # state: running it ahead, in another thread, would change the real sample's draws.
        _log.info(
            "prefetch: %s before ComputeDaskd is not a MONAI or tlcore transform and may use "
            "a global random state; nothing is fetched ahead",
            type(unknown[0]),
        )
        return None
    private = copy.deepcopy(transforms)
    for step in private.transforms:
        if isinstance(step, LoadLazyd):
            step.guard = False  # the real pipeline checks itself; the copy runs a prefix
    return private, list(private.transforms[:at])


def _draws_privately(transform: Any) -> bool:
    """Whether running ``transform`` leaves every global random state alone: MONAI's and
    tlcore's transforms draw only from their own ``R`` (set by ``set_random_state``)."""
    kind = type(transform)
    if kind.__name__ in {"Lambda", "Lambdad", "RandLambda", "RandLambdad"}:
        return False  # runs a user's function
    return kind.__module__.split(".")[0] in {"monai", "tlcore"}


class Prefetcher:
    """One process's fetching ahead for one dataset (see the module docstring).

    Args:
        dataset: the :class:`~tlcore.training.dataset.TimelapseDataset` (its ``draw``,
            ``transforms``, ``independent_crops``).
        plan: the DataLoader's :class:`LoaderPlan`.
        budget: bytes the process's cache may hold.
    """

    def __init__(self, dataset: Any, plan: LoaderPlan, budget: int) -> None:
        self.dataset = dataset
        self.plan = plan
        self.budget = int(budget)
        self.pid = os.getpid()
        self.lane = next(_lanes)
        # This rank's positions are rank, rank + replicas, ... (rank_positions): their count
        # is enough, no list of a long epoch in every worker.
        self._count = -(-plan.length // max(plan.replicas, 1))
        self._cond = threading.Condition()
        self._current: tuple[int, int, int] | None = None  # epoch, index, batch
        self._planned = -1  # the last ordinal planned
        self._thread: threading.Thread | None = None
        self._made = False  # a sample was made in this process (its files are open)
        self._stopped = False
        self._prefix: tuple[Any, list[Any]] | bool | None = False  # False: not built yet
        info = torch.utils.data.get_worker_info()
        self.workers = info.num_workers if info is not None else 1

    # -- the worker's side ---------------------------------------------------------------------
    def ordinal(self, epoch: int, index: int) -> int:
        return epoch * self._count + index

    def begin(self, epoch: int, position: int) -> int | None:
        """The worker starts making ``position`` of ``epoch``: its ordinal (pass it to
        :meth:`done`), or None when the position is not one the plan knows."""
        index = self._index(position)
        skip = self.plan.skip if epoch == self.plan.epoch else 0
        if index is None or index < skip:
            return None
        batch = (index - skip) // max(self.plan.batch_size, 1)
        ahead.install(self.budget).begin(self.ordinal(epoch, index), self.lane)
        with self._cond:
            self._current = (epoch, index, batch)
            self._cond.notify_all()
            if self._made:
                self._ensure_thread()
        return self.ordinal(epoch, index)

    def done(self, ordinal: int) -> None:
        """The sample ``ordinal`` is made: what it (and those before) needed is evicted. The
        thread starts after the process's first sample: that one opens the files, and the
        thread's planning then finds them open instead of opening them a second time."""
        cache = ahead.active()
        if cache is not None:
            cache.release(ordinal, self.lane)
        with self._cond:
            self._made = True
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopped = False
            self._thread = threading.Thread(target=self._run, name="tlcore-prefetch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the thread (it also ends by itself after :data:`IDLE_S` idle seconds)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def position(self, index: int) -> int:
        """The epoch position of this rank's ``index``-th sample."""
        return self.plan.rank + index * max(self.plan.replicas, 1)

    def _index(self, position: int) -> int | None:
        rank, replicas = self.plan.rank, max(self.plan.replicas, 1)
        index, off = divmod(position - rank, replicas)
        if off or not 0 <= index < self._count:
            return None
        return index

    # -- the thread ----------------------------------------------------------------------------
    def upcoming(self, current: tuple[int, int, int] | None = None) -> list[tuple[int, int]]:
        """``(epoch, index)`` of the samples this worker makes after ``current`` (default: the
        one it is making), nearest first, to the end of the epoch and :data:`MAX_AHEAD` at most.
        """
        if current is None:
            with self._cond:
                current = self._current
        if current is None:
            return []
        epoch, index, batch = current
        size = max(self.plan.batch_size, 1)
        skip = self.plan.skip if epoch == self.plan.epoch else 0
        out: list[tuple[int, int]] = []
        b = batch
        while len(out) < MAX_AHEAD:
            start = skip + b * size
            if start >= self._count:
                break
            stop = min(start + size, self._count)
            out.extend((epoch, i) for i in range(max(start, index + 1), stop))
            b += self.workers  # the worker's next batch (the DataLoader deals them round-robin)
        return out[:MAX_AHEAD]

    def _next(self) -> tuple[int, int] | None:
        """The nearest coming sample not planned yet, waiting for one (None: stop)."""
        while True:
            with self._cond:
                if self._stopped:
                    return None
                current, planned = self._current, self._planned
            for epoch, index in self.upcoming(current):
                if self.ordinal(epoch, index) > planned:
                    return epoch, index
            with self._cond:
                idle = self._current == current and not self._stopped
                if idle and not self._cond.wait(IDLE_S) and self._current == current:
                    return None  # idle: the epoch ended or the loader was dropped

    def _run(self) -> None:
        cache = ahead.install(self.budget)
        # Fetches of several coming samples in flight at once (each reader's prefetch blocks
        # until its objects are in): the latency of one is hidden behind the others.
        pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="tlcore-prefetch-fetch")
        inflight: set[Future[None]] = set()
        samples = 0
        try:
            while (target := self._next()) is not None:
                epoch, index = target
                ordinal = self.ordinal(epoch, index)
                if len(inflight) >= FETCH_THREADS:
                    inflight = wait(inflight, 0.5, FIRST_COMPLETED).not_done
                    continue
                per_sample = cache.stats.fetched_bytes / samples if samples else 0.0
                need = min(int(per_sample * (len(inflight) + 1)), self.budget)
                if not cache.wait_for_room(need, 0.5):
                    continue  # the worker frees room as it goes; re-check what is next
                reads = self._reads_or_none(epoch, self.position(index))
                with self._cond:
                    self._planned = max(self._planned, ordinal)
                if reads:
                    samples += 1
                    inflight.add(pool.submit(self._fetch, reads, ordinal))
        except Exception as exc:  # prefetch is an optimisation: never let it kill a worker
            _log.debug("prefetch stopped: %s: %s", type(exc).__name__, exc)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            cache.release(2**62, self.lane)
            _log.debug("prefetch thread of pid %s ends: %s", os.getpid(), cache.stats)

    def _reads_or_none(self, epoch: int, position: int) -> list[tuple[Any, Any]] | None:
        try:
            return self.reads(epoch, position)
        except Exception as exc:  # the real read will raise, naming the row
            _log.debug("prefetch: planning sample %s of epoch %s failed: %s", position, epoch,
                       exc)  # fmt: skip
            return None

    def _fetch(self, reads: list[tuple[Any, Any]], ordinal: int) -> None:
        for reader, regions in reads:
            fetch: Callable[..., Any] | None = getattr(reader, "prefetch", None)
            if fetch is None:
                continue
            try:
                fetch(regions, ordinal, self.lane)
            except Exception as exc:
                _log.debug("prefetch of %r failed: %s", reader, exc)

    def reads(self, epoch: int, position: int) -> list[tuple[Any, list[Sequence[slice]]]]:
        """The readers and TCZYX regions the sample at ``position`` of ``epoch`` will read:
        its draw and its pipeline's steps before ``ComputeDaskd``, seeded as the real sample
        is (:meth:`TimelapseDataset._make`), on a private copy."""
        from tlcore.lazy.array import LazyArray

        if self._prefix is False:
            self._prefix = _pipeline_prefix(self.dataset.transforms)
            if self._prefix is None:
                _log.info("prefetch: the pipeline has no top-level ComputeDaskd; nothing is "
                          "fetched ahead")  # fmt: skip
        if not self._prefix:
            return []
        pipeline, steps = self._prefix  # type: ignore[misc]
        sample = self.dataset.draw(epoch, position, 0)
        seed = sample.pop("_transform_seed")
        sample.pop("_index")
        runs = [(sample, seed)]
        if self.dataset.independent_crops and self.dataset.num_timepoints > 1:
            runs = [({**sample, "T": t, "T_seconds": s}, seed + k)
                    for k, (t, s) in enumerate(zip(sample["T"], sample["T_seconds"]))]  # fmt: skip
        found: dict[int, tuple[Any, list[Sequence[slice]]]] = {}
        for data, run_seed in runs:
            set_state = getattr(pipeline, "set_random_state", None)
            if set_state is not None:
                set_state(seed=run_seed)
            for step in steps:
                data = step(data)
            for value in data.values():
                read = value.region() if isinstance(value, LazyArray) else None
                if read is not None:
                    entry = found.setdefault(id(read.reader), (read.reader, []))
                    entry[1].extend(read.regions)
        return list(found.values())
