"""Tiles' predictions into output units: blended, cast and written once each, as soon as the
last tile that touches a unit is done. Only units still waiting for a tile are held."""

from __future__ import annotations

import collections
from collections.abc import Container
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from tlcore.prediction.grid import Plan, TileId, UnitId
from tlcore.prediction.writer import OutputStore

__all__ = ["Assembler", "cast"]


def cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float predictions into the store's dtype (integers rounded and clipped to its range)."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out: np.ndarray = np.clip(np.rint(values), info.min, info.max).astype(dtype)
        return out
    return values.astype(dtype, copy=False)


class _Open:
    """One unit waiting for tiles: the weighted sum and the sum of weights so far."""

    __slots__ = ("remaining", "total", "weights")

    def __init__(self, channels: int, shape: tuple[int, ...], remaining: int) -> None:
        self.total = np.zeros((channels, *shape), np.float32)
        self.weights = np.zeros(shape, np.float32)
        self.remaining = remaining


class Assembler:
    """Collects tile predictions and writes finished units to ``store`` (on a writer thread).

    Args:
        plan: the tiling.
        store: where units go.
        channels: output channels.
        skip: units already written (resume): contributions to them are dropped.
        max_pending: writes queued on the writer thread before :meth:`add` waits.
    """

    def __init__(
        self,
        plan: Plan,
        store: OutputStore,
        channels: int,
        skip: Container[UnitId] = (),
        max_pending: int = 8,
    ) -> None:
        self.plan = plan
        self.store = store
        self.channels = channels
        self.dtype = np.dtype(store.array.dtype)
        self.skip = skip
        self.open: dict[UnitId, _Open] = {}
        self.units_written = 0
        self.voxels_written = 0
        self.peak_open_bytes = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tlcore-predict-writer")
        self._pending: collections.deque[Future[None]] = collections.deque()
        self._max_pending = max_pending

    def add(self, tile: TileId, prediction: np.ndarray) -> None:
        """Add one tile's prediction over its read window, shape (C, Z, Y, X), float32."""
        read = self.plan.read_box(tile)
        keep = self.plan.keep_box(tile)
        kept = prediction[:, *(slice(k0 - r0, k1 - r0) for (k0, k1), (r0, _) in zip(keep, read))]
        weight: np.ndarray | None = None
        for unit in self.plan.units_of(tile):
            if unit in self.skip:
                continue
            box = self.plan.unit_box(unit)
            inter = [(max(a0, b0), min(a1, b1)) for (a0, a1), (b0, b1) in zip(box, keep)]
            src = tuple(slice(i0 - k0, i1 - k0) for (i0, i1), (k0, _) in zip(inter, keep))
            n = self.plan.contributors(unit)
            if n == 1:
                # The unit is this tile's alone: its prediction, unweighted, so bit-exact.
                self._submit(unit, box, cast(kept[(slice(None), *src)], self.dtype))
                continue
            if weight is None:
                weight = self.plan.weight(tile)
            acc = self.open.get(unit)
            if acc is None:
                acc = self.open[unit] = _Open(self.channels, tuple(b1 - b0 for b0, b1 in box), n)
                self._account()
            dst = tuple(slice(i0 - b0, i1 - b0) for (i0, i1), (b0, _) in zip(inter, box))
            w = weight[src]
            acc.total[(slice(None), *dst)] += kept[(slice(None), *src)] * w
            acc.weights[dst] += w
            acc.remaining -= 1
            if acc.remaining == 0:
                del self.open[unit]
                # Every voxel of a unit is in some tile's kept range: no zero weight.
                self._submit(unit, box, cast(acc.total / acc.weights, self.dtype))

    def _account(self) -> None:
        held = sum(a.total.nbytes + a.weights.nbytes for a in self.open.values())
        self.peak_open_bytes = max(self.peak_open_bytes, held)

    def _submit(self, unit: UnitId, box: tuple[tuple[int, int], ...], values: np.ndarray) -> None:
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()  # re-raises a failed write here
        self._pending.append(self._pool.submit(self.store.write, unit, box, values))
        self.units_written += 1
        self.voxels_written += int(np.prod([b - a for a, b in box]))

    def finish(self) -> None:
        """Wait for every queued write; fail if a unit is still waiting for a tile."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
        if self.open:
            missing = sorted(self.open)[:5]
            raise RuntimeError(
                f"{len(self.open)} output unit(s) never received all their tiles, e.g. "
                f"{missing}: the tiles given were not the plan's"
            )
