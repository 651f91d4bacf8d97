"""Small value types shared by tlcore and its plugins. Pure Python: importing this is free."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

#: The one axis order tlcore hands out, whatever the file stores.
DIMS = "TCZYX"


@dataclass(frozen=True)
class ReaderInfo:
    """What a reader plugin says about itself (the ``reader_info`` hook).

    Attributes:
        name: short unique name, used in ``reader="..."`` and ``TLCORE_DISABLE_READERS``.
        extensions: lower-case suffixes it claims, with the dot (``".ome.zarr"``, ``".zarr"``).
            ``"*"`` claims every source (a catch-all, asked last because it matches no suffix).
        priority: higher wins among readers that can open the same source.
        description: one line for ``tlcore plugins``.
        remote: whether it can read non-local sources (``s3://``, ``https://``...).
    """

    name: str
    extensions: tuple[str, ...]
    priority: int = 0
    description: str = ""
    remote: bool = True

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"ReaderInfo.name must be a non-empty string, got {self.name!r}")
        exts = tuple(e.lower() for e in self.extensions)
        bad = [e for e in exts if e != "*" and not e.startswith(".")]
        if bad:
            raise ValueError(f"reader {self.name!r}: extensions must start with '.': {bad}")
        object.__setattr__(self, "extensions", exts)

    def match_length(self, filename: str) -> int | None:
        """Length of the longest claimed extension that ``filename`` ends with (0 for ``"*"``),
        or None when none matches."""
        name = filename.lower()
        best: int | None = None
        for ext in self.extensions:
            if ext == "*":
                best = max(best or 0, 0)
            elif name.endswith(ext) and len(name) > len(ext):
                best = max(best or 0, len(ext))
        return best


class PixelSizes(NamedTuple):
    """Physical pixel size per spatial axis, in micrometres; None where the file does not say."""

    z: float | None = None
    y: float | None = None
    x: float | None = None


@dataclass(frozen=True)
class TimeAxis:
    """The time axis of a scene.

    Attributes:
        size: number of timepoints.
        timestamps: per-frame acquisition times in seconds from the first frame's reference,
            when the file records them; otherwise None.
        interval: the nominal frame interval in seconds, when known; otherwise None.
    """

    size: int
    timestamps: tuple[float, ...] | None = None
    interval: float | None = None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"TimeAxis.size must be >= 0, got {self.size}")
        if self.timestamps is not None:
            stamps = tuple(float(t) for t in self.timestamps)
            if len(stamps) != self.size:
                raise ValueError(
                    f"TimeAxis has {len(stamps)} timestamps for {self.size} timepoints"
                )
            object.__setattr__(self, "timestamps", stamps)
        if self.interval is not None and not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"TimeAxis.interval must be a positive number, got {self.interval}")

    def seconds(self) -> tuple[float, ...] | None:
        """Time of every frame in seconds: the recorded timestamps when there are any, else the
        nominal grid ``i * interval``, else None."""
        if self.timestamps is not None:
            return self.timestamps
        if self.interval is not None:
            return tuple(i * self.interval for i in range(self.size))
        return None


@dataclass(frozen=True)
class Level:
    """One resolution level of a scene.

    Attributes:
        index: 0 for full resolution.
        shape: T, C, Z, Y, X.
        downsampling: per T, C, Z, Y, X axis, level-0 pixels per pixel of this level.
        chunks: the storage chunk shape in T, C, Z, Y, X, when the format has one.
    """

    index: int
    shape: tuple[int, int, int, int, int]
    downsampling: tuple[float, float, float, float, float] = (1.0, 1.0, 1.0, 1.0, 1.0)
    chunks: tuple[int, int, int, int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("shape", "downsampling", "chunks"):
            value = getattr(self, name)
            if value is not None and len(value) != 5:
                raise ValueError(f"Level.{name} must have 5 entries (TCZYX), got {value!r}")
