"""What to read to estimate a file's statistics: a pyramid level, then whole or a strided
subset of tiles of it, within a voxel budget.

The choice: among the levels at or coarser than the one asked for, the coarsest that still
holds :data:`MIN_VOXELS` voxels per channel over the chosen timepoints (fewer would make the
tails unstable); when that level holds more than :data:`BUDGET_VOXELS` per channel, a subset of
tiles spread evenly over its (timepoint, Z, Y, X) tile grid is read instead of all of it. A
tile is one storage chunk, shrunk until it is at most 1/64 of the budget, so the sample spans
at least 64 places of the image.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tlcore.types import Level

#: Fewest voxels per channel a level needs to be used for the estimate.
MIN_VOXELS = 2**22
#: Most voxels per channel read for one estimate.
BUDGET_VOXELS = 2**22
#: The tile grid is sampled with this seed: the same file gives the same sample every run.
SEED = 20240522
#: The sample spans at least this many tiles (smaller tiles, more places: stabler tails).
MIN_TILES = 64

Box = tuple[int, slice, slice, slice]  # timepoint, Z, Y, X


@dataclass(frozen=True)
class Plan:
    """What one estimate reads: ``level``, and ``boxes`` (timepoint, Z, Y, X) at that level."""

    level: int
    boxes: list[Box]
    whole: bool  # every voxel of the chosen timepoints at ``level``

    @property
    def voxels(self) -> int:
        """Voxels per channel the plan reads."""
        return sum(
            (z.stop - z.start) * (y.stop - y.start) * (x.stop - x.start)
            for _, z, y, x in self.boxes
        )


def choose_level(
    levels: Sequence[Level], level: int, n_timepoints: int, min_voxels: int = MIN_VOXELS
) -> int:
    """The coarsest level at or after ``level`` holding ``min_voxels`` per channel over
    ``n_timepoints`` timepoints; ``level`` itself when none does."""
    chosen = level
    for lv in levels[level:]:
        _, _, z, y, x = lv.shape
        if n_timepoints * z * y * x >= min_voxels:
            chosen = lv.index
    return chosen


def _tile(chunks: Sequence[int], shape: Sequence[int], limit: int) -> list[int]:
    """Z, Y, X tile: the chunk (clipped to the image), halved along its longest axis until it
    holds at most ``limit`` voxels."""
    tile = [max(1, min(int(c), int(n))) for c, n in zip(chunks, shape)]
    while math.prod(tile) > limit and max(tile) > 1:
        axis = int(np.argmax(tile))
        tile[axis] = -(-tile[axis] // 2)
    return tile


def plan(
    level: Level,
    timepoints: Sequence[int],
    chunks: Sequence[int],
    budget: int = BUDGET_VOXELS,
) -> Plan:
    """The boxes to read at ``level`` (TCZYX ``chunks``, the storage's) for ``timepoints``."""
    _, _, z, y, x = level.shape
    spatial = (z, y, x)
    total = len(timepoints) * z * y * x
    if total <= budget:
        whole: list[Box] = [(t, slice(0, z), slice(0, y), slice(0, x)) for t in timepoints]
        return Plan(level.index, whole, True)
    tile = _tile(chunks[2:], spatial, max(1, budget // MIN_TILES))
    grid = [-(-n // s) for n, s in zip(spatial, tile)]
    n_tiles = len(timepoints) * math.prod(grid)
    k = min(n_tiles, max(1, budget // math.prod(tile)))
    # Stratified: one tile drawn from each of k equal runs of the flattened grid, so the sample
    # spreads over time and space without the aliasing a fixed stride can have.
    rng = np.random.default_rng(SEED)
    edges = np.linspace(0, n_tiles, k + 1).astype(np.int64)
    picks = [int(rng.integers(lo, max(hi, lo + 1))) for lo, hi in itertools.pairwise(edges)]
    boxes: list[Box] = []
    for flat in sorted(set(picks)):
        ti, rest = divmod(flat, math.prod(grid))
        iz, rest = divmod(rest, grid[1] * grid[2])
        iy, ix = divmod(rest, grid[2])
        starts = (iz * tile[0], iy * tile[1], ix * tile[2])
        sz, sy, sx = (slice(s, min(s + n, lim)) for s, n, lim in zip(starts, tile, spatial))
        boxes.append((int(timepoints[ti]), sz, sy, sx))
    return Plan(level.index, boxes, False)
