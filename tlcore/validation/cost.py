"""What training will cost when a manifest passes: bytes per sample, decoded bytes (read
amplification) and memory per DataLoader worker, from metadata alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tlcore.images import LazyImage
    from tlcore.sampling.manifest import ManifestRow
from tlcore.validation.report import SplitCost

#: Resident memory of an idle DataLoader worker that has imported torch, MONAI, dask and the
#: readers (measured: 321 MiB peak RSS on Linux, CPU torch 2.13; see docs/troubleshooting.md).
WORKER_BASE_BYTES = 336 * 2**20
#: DataLoader's default batches in flight per worker.
PREFETCH_FACTOR = 2


@dataclass(frozen=True)
class Facts:
    """What the cost estimate needs of a valid row."""

    path: str
    timepoints: int
    sample_bytes: float
    output_bytes: float
    decoded_bytes: float


def expected_chunks(size: int, window: int, chunk: int) -> float:
    """Mean number of chunks a window of ``window`` at a uniformly random start touches."""
    window, chunk = max(1, min(window, size)), max(1, chunk)
    starts = size - window + 1
    if starts > 200_000:  # the grid is periodic: the mean over one chunk period is exact
        starts_range: Sequence[int] = range(chunk)
    else:
        starts_range = range(starts)
    total = sum((s + window - 1) // chunk - s // chunk + 1 for s in starts_range)
    return total / len(starts_range)


def row_facts(
    row: ManifestRow,
    image: LazyImage,
    channels: list[int],
    n_range: int,
    num_timepoints: int,
    patch: tuple[int, int, int],
) -> Facts:
    t, c, z, y, x = image.shape
    ct, cc, cz, cy, cx = (int(n) for n in image.data.chunksize)
    itemsize = int(image.dtype.itemsize)
    crop = [min(p, n) for p, n in zip(patch, (z, y, x))]
    sample = num_timepoints * len(channels) * math.prod(crop) * itemsize
    c_chunks = len({ch // cc for ch in channels})
    decoded = (
        min(num_timepoints * ct, t)
        * min(c_chunks * cc, c)
        * math.prod(
            min(expected_chunks(n, p, k) * k, n) for n, p, k in zip((z, y, x), crop, (cz, cy, cx))
        )
        * itemsize
    )
    return Facts(row.path, n_range, sample, sample / itemsize * 4, max(decoded, sample))


def split_cost(split: str, facts: list[Facts], batch_size: int, prefetch: int) -> SplitCost:
    n = len(facts)
    sample = sum(f.sample_bytes for f in facts) / n
    decoded = sum(f.decoded_bytes for f in facts) / n
    worst = max(facts, key=lambda f: f.decoded_bytes + f.output_bytes)
    in_flight = max(1, prefetch) * max(1, batch_size)
    return SplitCost(
        split=split,
        rows=n,
        files=len({f.path for f in facts}),
        timepoints=sum(f.timepoints for f in facts),
        sample_bytes=sample,
        output_bytes=sum(f.output_bytes for f in facts) / n,
        decoded_bytes=decoded,
        decoded_bytes_max=worst.decoded_bytes,
        amplification=decoded / sample if sample else 1.0,
        worker_bytes=WORKER_BASE_BYTES + in_flight * (worst.decoded_bytes + worst.output_bytes),
    )
