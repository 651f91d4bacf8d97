"""Pure functions that decide what an epoch draws: which manifest row each position of an epoch
reads, which timepoints it samples, and which positions each distributed rank takes.

Every draw is a function of ``(seed, split, epoch, position)`` alone, never of a random state
that lives in a process. That is what makes a batch the same whatever the number of DataLoader
workers, lets a new epoch draw new timepoints, and lets a resumed run continue the sequence.
Only numpy is needed here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

#: The timepoint sampling strategies (``timepoint_sampling``).
SAMPLING_MODES = ("random", "sequential", "uniform")


def _split_code(split: str) -> int:
    # A stable number per split name (Python's hash() is salted per process).
    return zlib.crc32(split.encode())


def rng_for(
    seed: int, split: str, epoch: int, position: int, stream: int = 0
) -> np.random.Generator:
    """The random generator of one sample: independent for every (seed, split, epoch, position,
    stream), identical in every process that asks for it."""
    return np.random.default_rng([int(seed), _split_code(split), int(epoch), int(position), stream])


def epoch_rows(
    n_rows: int, length: int, seed: int, split: str, epoch: int, shuffle: bool
) -> np.ndarray:
    """The manifest row read at each of the ``length`` positions of an epoch.

    With ``shuffle``, rows come in a fresh random order per epoch; when ``length`` exceeds the
    number of rows, further passes each take a new permutation, so every row is drawn as evenly
    as ``length`` allows. Without ``shuffle`` (validation, test), positions cycle through the
    rows in manifest order and the epoch number is ignored.
    """
    if n_rows <= 0:
        raise ValueError("the manifest split has no rows")
    if not shuffle:
        return np.arange(length, dtype=np.int64) % n_rows
    passes = -(-length // n_rows)
    rng = np.random.default_rng([int(seed), _split_code(split), int(epoch), 2**31 - 1])
    order = np.concatenate([rng.permutation(n_rows) for _ in range(passes)])
    return order[:length].astype(np.int64)


@dataclass(frozen=True)
class TimeRange:
    """Timepoints ``start`` (inclusive) to ``stop`` (exclusive) of one manifest row."""

    start: int
    stop: int

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def resolve_range(start: int | None, stop: int | None, size: int) -> TimeRange:
    """Turn a manifest's start/stop into a concrete range over ``size`` timepoints.

    ``start`` defaults to 0; ``stop`` is exclusive, and ``None`` or ``-1`` means "to the end"
    (the last timepoint included). Other negative values count from the end, as in Python.
    Raises ValueError when the range is empty or lies outside the file.
    """
    lo = 0 if start is None else int(start)
    hi = size if stop is None or int(stop) == -1 else int(stop)
    if lo < 0:
        lo += size
    if hi < 0:
        hi += size
    if not 0 <= lo < size:
        raise ValueError(f"start {start} is outside the file's {size} timepoint(s)")
    if hi > size:
        raise ValueError(
            f"stop {stop} is beyond the file's {size} timepoint(s) (stop is exclusive; "
            "use -1 or leave it empty for 'to the end')"
        )
    if hi <= lo:
        raise ValueError(f"start {start} is not before stop {stop}: the range is empty")
    return TimeRange(lo, hi)


def sample_timepoints(
    rng: np.random.Generator, time_range: TimeRange, n: int, mode: str
) -> list[int]:
    """Draw ``n`` timepoint indices from ``time_range``, in increasing order.

    * ``random``: ``n`` distinct timepoints, uniformly, without replacement.
    * ``sequential``: a contiguous window of ``n`` timepoints at a uniformly random start.
    * ``uniform``: ``n`` evenly spaced timepoints with step ``len // n`` and a random phase.

    Raises ValueError when the range holds fewer than ``n`` timepoints: repeating frames would
    silently change what a temporal model learns, so the manifest must say what it wants.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"timepoint_sampling must be one of {SAMPLING_MODES}, got {mode!r}")
    if n < 1:
        raise ValueError(f"num_timepoints must be at least 1, got {n}")
    length = len(time_range)
    if length < n:
        raise ValueError(
            f"the range [{time_range.start}, {time_range.stop}) holds {length} timepoint(s), "
            f"fewer than num_timepoints={n}"
        )
    lo = time_range.start
    if mode == "random":
        picked = rng.choice(length, size=n, replace=False)
        return sorted(lo + int(i) for i in picked)
    if mode == "sequential":
        first = int(rng.integers(0, length - n + 1))
        return list(range(lo + first, lo + first + n))
    step = length // n
    phase = int(rng.integers(0, length - (n - 1) * step))
    return [lo + phase + k * step for k in range(n)]


def rank_positions(length: int, rank: int, world_size: int) -> list[int]:
    """The epoch positions one distributed rank reads: every ``world_size``-th position starting
    at ``rank``. The ranks' shares are disjoint and together cover the epoch; when ``length`` is
    not a multiple of ``world_size``, ranks that would fall short take positions past the end
    (fresh draws, as :class:`torch.utils.data.DistributedSampler` pads) so that every rank runs
    the same number of steps."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    per_rank = -(-length // world_size)
    return [rank + k * world_size for k in range(per_rank)]
