"""TimelapseDataLoader: a DataLoader that can stop and resume mid-epoch (``state_dict``), and
turns a dead or stalled worker into one error that says what to do.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader

from tlcore.errors import TlcoreError
from tlcore.training.dataset import SampleError, TimelapseDataset
from tlcore.training.prefetch import LoaderPlan
from tlcore.training.sampler import TimelapseSampler


class WorkerError(TlcoreError):
    """A DataLoader worker died or stalled: the run ends with this instead of hanging."""


class TimelapseDataLoader(DataLoader[dict[str, Any]]):
    """A DataLoader that can say where it is in an epoch and resume there.

    ``state_dict()`` is ``{"epoch", "batches"}``: the epoch being read and the batches this
    rank has handed out of it (or what ``progress()`` reports: the datamodule passes what the
    trainer really trained on); ``load_state_dict`` makes the next pass start there. Lightning
    saves and restores it with its checkpoints.
    """

    def __init__(
        self,
        dataset: TimelapseDataset,
        progress: Callable[[], Mapping[str, int] | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.progress = progress
        self._batches = 0
        self._epoch = self._sampler().epoch

    def _sampler(self) -> TimelapseSampler:
        sampler = self.sampler
        if not isinstance(sampler, TimelapseSampler):
            raise TypeError("TimelapseDataLoader needs a TimelapseSampler")
        return sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self._sampler()
        self._epoch = sampler.epoch
        self._batches = sampler.skip // max(self.batch_size or 1, 1)
        dataset = self.dataset
        if isinstance(dataset, TimelapseDataset) and dataset.prefetch:
            # Before the workers start (they get the dataset with it): each then knows the
            # positions it makes next, and fetches their chunks ahead.
            dataset.set_plan(
                LoaderPlan(
                    batch_size=max(self.batch_size or 1, 1),
                    length=sampler.length,
                    rank=sampler.rank,
                    replicas=sampler.num_replicas,
                    epoch=sampler.epoch,
                    skip=sampler.skip,
                )
            )
        try:
            yield from self._batches_of(super().__iter__())
        finally:
            if isinstance(dataset, TimelapseDataset) and self.num_workers == 0:
                dataset.stop_prefetch()  # the main process's thread: not left behind
        self._epoch, self._batches = sampler.epoch, 0

    def _batches_of(self, batches: Iterator[Any]) -> Iterator[Any]:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except SampleError as exc:
                short = short_sample_error(exc)
                if short is exc:
                    raise
                raise short from None
            except RuntimeError as exc:
                raise _worker_error(exc, self) from exc
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``progress`` (the datamodule's view of what was trained on) wins when it has one."""
        known = self.progress() if self.progress is not None else None
        if known is not None:
            return dict(known)
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        sampler = self._sampler()
        sampler.set_epoch(int(state["epoch"]))
        sampler.skip = int(state["batches"]) * max(self.batch_size or 1, 1)
        self._epoch, self._batches = int(state["epoch"]), int(state["batches"])


def _worker_error(exc: RuntimeError, loader: TimelapseDataLoader) -> RuntimeError | WorkerError:
    """torch's messages for a dead or stalled worker, turned into one that says what to do."""
    text = str(exc)
    dataset = loader.dataset
    split = getattr(dataset, "split", "?")
    where = f"the {split!r} DataLoader ({loader.num_workers} worker(s), batch {loader._batches})"
    if "timed out" in text:
        return WorkerError(
            f"{where}: no batch came back within timeout={loader.timeout:g} s, so the run was "
            "stopped instead of hanging. A read is stalled (unreachable storage, a lock, a "
            "reader that blocks); run with num_workers=0 to see where, or raise the "
            f"datamodule's worker_timeout if reads are really this slow. ({text})"
        )
    if "exited unexpectedly" in text or "killed by signal" in text:
        return WorkerError(
            f"{where}: a worker died ({text.splitlines()[0]}). Killed by the system usually "
            "means out of memory: `tlcore validate MANIFEST --batch-size N` estimates the "
            "memory per worker; lower num_workers or batch_size, or run with num_workers=0 to "
            "see a crash in the main process."
        )
    return exc


_WORKER_MARKER = "Original Traceback (most recent call last):"


def debug_wanted() -> bool:
    """``TLCORE_DEBUG=1`` (what ``tlcore --debug`` sets): keep whole tracebacks."""
    return os.environ.get("TLCORE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def short_sample_error(exc: SampleError) -> SampleError:
    """One short :class:`SampleError` for a failed sample (split, row, file, transform and
    cause are in its message) instead of the worker's chained tracebacks; the traceback is kept
    in ``.worker_traceback``. Under ``TLCORE_DEBUG=1`` the error is returned unchanged."""
    if debug_wanted():
        return exc
    text = str(exc)
    if _WORKER_MARKER in text:  # re-raised by torch from a worker: the traceback is the text
        tb = text.split(_WORKER_MARKER, 1)[1]
        last = tb.rsplit("Traceback (most recent call last):", 1)[-1]
        lines = last.splitlines()
        start = next(
            (i for i, line in enumerate(lines) if line and not line[0].isspace()), len(lines)
        )
        message = re.sub(r"^[\w.]+: ", "", "\n".join(lines[start:]).strip(), count=1)
        where = text.split("\n", 1)[0].replace("Caught SampleError in ", "in ").rstrip(".")
        message = f"{message} ({where})"
    else:
        tb = "".join(traceback.format_exception(exc))
        message = text
    short = SampleError(f"{message}\n(the traceback: run with --debug or TLCORE_DEBUG=1)")
    short.worker_traceback = tb  # type: ignore[attr-defined]
    return short
