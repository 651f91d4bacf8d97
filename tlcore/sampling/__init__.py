"""What a training epoch reads: manifest rows (:mod:`~tlcore.sampling.manifest`) and the pure
draws of rows and timepoints from (seed, epoch, position) (:mod:`~tlcore.sampling.draws`).

numpy only: no torch, no reader.
"""

from __future__ import annotations

from tlcore.sampling.draws import (
    SAMPLING_MODES,
    TimeRange,
    epoch_rows,
    rank_positions,
    resolve_range,
    rng_for,
    sample_timepoints,
)

__all__ = [
    "SAMPLING_MODES",
    "TimeRange",
    "epoch_rows",
    "rank_positions",
    "resolve_range",
    "rng_for",
    "sample_timepoints",
]
