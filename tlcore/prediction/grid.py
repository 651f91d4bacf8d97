"""The tiling of a whole-image prediction: tiles, output write units, blend weights, and who
does what. Pure numpy; no torch, no I/O.

Along each spatial axis (Z, Y, X) the image is cut into *cores* of ``tile`` voxels (the last one
shorter). A tile *keeps* its core widened by the overlap (``overlap // 2`` before, the rest
after, clipped to the image) and *reads* its kept range widened by the halo. The read window
has the same length for every tile of an axis (``tile + overlap + 2 * halo``, or the whole axis
when that is shorter): at the image's borders it is shifted inwards rather than clipped, so
tiles batch together and the model's own padding acts only at the image's true borders, as it
does on the whole image. So a tile's kept prediction equals the whole-image prediction as soon
as the halo covers the model's receptive field radius, and any normalised blend of equal
predictions is that prediction again.

The output is written in *units*: one timepoint, every output channel, and one zarr chunk (or
shard) of Z, Y, X. A unit is written once, when the last tile whose kept range touches it is
done. Tiles that share a unit (through the overlap) form one *group*; groups go whole to one
rank, so no tile is predicted twice and no unit is written by two ranks.

Everything is kept per axis (the tiles and units of the image are the product of the axes'),
so the plan's size does not grow with the image's volume.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BLENDS", "Axis", "Plan"]

#: The blend modes: ``gaussian`` and ``linear`` weight overlapping kept predictions (normalised
#: per voxel); ``none`` keeps each voxel from the one tile whose core holds it (overlap unused).
BLENDS = ("gaussian", "linear", "none")


@dataclass(frozen=True)
class Axis:
    """One spatial axis of the plan.

    Attributes:
        size: the image's length along the axis.
        tile: core length (the step between tiles).
        halo: context read beyond the kept range on each interior side.
        overlap: width over which neighbouring tiles' kept ranges overlap.
        unit: the output write unit's length (a chunk or a shard).
        blend: one of :data:`BLENDS`.
    """

    size: int
    tile: int
    halo: int
    overlap: int
    unit: int
    blend: str = "gaussian"
    keep: list[tuple[int, int]] = field(init=False, repr=False)
    read: list[tuple[int, int]] = field(init=False, repr=False)
    contributors: list[list[int]] = field(init=False, repr=False)
    groups: list[list[int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("size", "tile", "unit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("halo", "overlap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        n, step = self.size, self.tile
        overlap = 0 if self.blend == "none" else self.overlap
        window = min(step + overlap + 2 * self.halo, n)
        keep, read = [], []
        for start in range(0, n, step):
            k0 = max(0, start - overlap // 2)
            k1 = min(n, start + step + overlap - overlap // 2)
            r0 = max(0, min(k0 - self.halo, n - window))
            keep.append((k0, k1))
            read.append((r0, r0 + window))
        n_units = math.ceil(n / self.unit)
        contributors: list[list[int]] = [[] for _ in range(n_units)]
        for i, (k0, k1) in enumerate(keep):
            for u in range(k0 // self.unit, (k1 - 1) // self.unit + 1):
                contributors[u].append(i)
        # Neighbouring tiles that write into one unit belong to one group.
        groups: list[list[int]] = [[0]]
        for i in range(1, len(keep)):
            if (keep[i - 1][1] - 1) // self.unit >= keep[i][0] // self.unit:
                groups[-1].append(i)
            else:
                groups.append([i])
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "read", read)
        object.__setattr__(self, "contributors", contributors)
        object.__setattr__(self, "groups", groups)

    @property
    def n_tiles(self) -> int:
        return len(self.keep)

    @property
    def n_units(self) -> int:
        return len(self.contributors)

    @property
    def window(self) -> int:
        """The read window's length (the model's input size along this axis)."""
        return self.read[0][1] - self.read[0][0]

    def unit_range(self, u: int) -> tuple[int, int]:
        return u * self.unit, min(self.size, (u + 1) * self.unit)

    def units_of(self, i: int) -> range:
        """The units tile ``i``'s kept range touches."""
        k0, k1 = self.keep[i]
        return range(k0 // self.unit, (k1 - 1) // self.unit + 1)

    def weight(self, i: int) -> np.ndarray:
        """Tile ``i``'s blend weight along this axis, over its kept range (float32, > 0)."""
        k0, k1 = self.keep[i]
        length = k1 - k0
        if self.blend == "none" or self.overlap == 0:
            return np.ones(length, np.float32)
        pos = np.arange(length, dtype=np.float64)
        if self.blend == "linear":
            w = np.ones(length)
            ramp = (np.arange(self.overlap) + 0.5) / self.overlap
            # Ramps only on sides that meet a neighbour; symmetric ramps sum to 1 there.
            if i > 0:
                w[: self.overlap] = np.minimum(w[: self.overlap], ramp[:length])
            if i < len(self.keep) - 1:
                w[-self.overlap :] = np.minimum(w[-self.overlap :], ramp[::-1][-length:])
        else:  # gaussian, sigma an eighth of the kept length, as MONAI's sliding window
            sigma = max(length / 8.0, 0.5)
            w = np.exp(-0.5 * ((pos - (length - 1) / 2.0) / sigma) ** 2)
            w = np.maximum(w, 1e-3)  # never 0: every voxel keeps a defined average
        return w.astype(np.float32)

    def check(self) -> None:
        """Assert the invariants the exactness rests on (cheap; run on every plan)."""
        for (k0, k1), (r0, r1) in zip(self.keep, self.read):
            assert r0 <= k0 < k1 <= r1, (k0, k1, r0, r1)
            assert r0 == 0 or k0 - r0 >= self.halo
            assert r1 == self.size or r1 - k1 >= self.halo


TileId = tuple[int, int, int, int]  # t, tile z, tile y, tile x
UnitId = tuple[int, int, int, int]  # t, unit z, unit y, unit x


class Plan:
    """Tiles and units of a prediction over ``n_t`` timepoints of a ZYX image.

    Args:
        n_t: number of output timepoints.
        shape: the image's Z, Y, X.
        tile: the kept block of each tile, per axis Z, Y, X (see :class:`Axis`).
        halo: context read around each tile, per axis.
        overlap: width over which neighbouring tiles are blended, per axis.
        unit: the output's write unit (a chunk or shard), per axis.
        blend: one of :data:`BLENDS`.
    """

    def __init__(
        self,
        n_t: int,
        shape: Sequence[int],
        tile: Sequence[int],
        halo: Sequence[int],
        overlap: Sequence[int],
        unit: Sequence[int],
        blend: str = "gaussian",
    ) -> None:
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}; got {blend!r}")
        self.n_t = n_t
        self.blend = blend
        self.axes = tuple(
            Axis(int(n), int(min(tl, n)), int(h), int(o), int(u), blend)
            for n, tl, h, o, u in zip(shape, tile, halo, overlap, unit)
        )
        for axis in self.axes:
            axis.check()
        # Traverse the axis with the most tiles slowest: the units left open by overlapping
        # tiles are then those along the shorter axes (a row, not a plane of the long one).
        self.order = sorted(range(3), key=lambda a: -self.axes[a].n_tiles)

    @property
    def window(self) -> tuple[int, int, int]:
        """The model's input size Z, Y, X (every tile's)."""
        z, y, x = (a.window for a in self.axes)
        return z, y, x

    @property
    def n_tiles(self) -> int:
        return self.n_t * math.prod(a.n_tiles for a in self.axes)

    @property
    def n_units(self) -> int:
        return self.n_t * math.prod(a.n_units for a in self.axes)

    def _ordered(self, per_axis: Sequence[Sequence[int]]) -> Iterator[tuple[int, int, int]]:
        lists = [per_axis[a] for a in self.order]
        for combo in itertools.product(*lists):
            out = [0, 0, 0]
            for a, v in zip(self.order, combo):
                out[a] = v
            yield out[0], out[1], out[2]

    def groups(self) -> Iterator[list[TileId]]:
        """The groups of tiles that share units, in a fixed order, each in traversal order."""
        for t in range(self.n_t):
            for gz, gy, gx in self._ordered([range(len(a.groups)) for a in self.axes]):
                members = [
                    self.axes[0].groups[gz],
                    self.axes[1].groups[gy],
                    self.axes[2].groups[gx],
                ]
                yield [(t, *zyx) for zyx in self._ordered(members)]

    def batches(self, batch_size: int, rank: int = 0, world: int = 1) -> Iterator[list[TileId]]:
        """Rank ``rank``'s tiles in batches of ``batch_size`` (the last one may be shorter):
        whole groups, round-robin over the ranks. The batches are a pure function of the plan
        and the arguments, so a resumed run predicts the very same batches."""
        batch: list[TileId] = []
        for g, group in enumerate(self.groups()):
            if g % world != rank:
                continue
            for tile in group:
                batch.append(tile)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def units_of(self, tile: TileId) -> Iterator[UnitId]:
        t, iz, iy, ix = tile
        uz, uy, ux = (a.units_of(i) for a, i in zip(self.axes, (iz, iy, ix)))
        for u in itertools.product(uz, uy, ux):
            yield (t, *u)

    def contributors(self, unit: UnitId) -> int:
        """How many tiles write into ``unit``."""
        return math.prod(len(a.contributors[u]) for a, u in zip(self.axes, unit[1:]))

    def read_box(self, tile: TileId) -> tuple[tuple[int, int], ...]:
        """The tile's read window, (start, stop) per Z, Y, X."""
        return tuple(a.read[i] for a, i in zip(self.axes, tile[1:]))

    def keep_box(self, tile: TileId) -> tuple[tuple[int, int], ...]:
        """The tile's kept range, (start, stop) per Z, Y, X."""
        return tuple(a.keep[i] for a, i in zip(self.axes, tile[1:]))

    def unit_box(self, unit: UnitId) -> tuple[tuple[int, int], ...]:
        """The unit's range, (start, stop) per Z, Y, X."""
        return tuple(a.unit_range(u) for a, u in zip(self.axes, unit[1:]))

    def weight(self, tile: TileId) -> np.ndarray:
        """The tile's blend weight over its kept range, shape (Z, Y, X)."""
        wz, wy, wx = (a.weight(i) for a, i in zip(self.axes, tile[1:]))
        weight: np.ndarray = wz[:, None, None] * wy[None, :, None] * wx[None, None, :]
        return weight
