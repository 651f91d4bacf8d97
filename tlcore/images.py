"""The lazy image a reader hands back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlcore.types import DIMS, PixelSizes, TimeAxis

if TYPE_CHECKING:
    import dask.array as da


@dataclass(frozen=True)
class LazyImage:
    """One scene at one resolution level, with no pixel read yet.

    Attributes:
        data: 5-D dask array in T, C, Z, Y, X order. Slicing it is free; computing it reads
            only the storage chunks the slice touches.
        scene: the scene id (as in :func:`tlcore.list_scenes`).
        level: the resolution level (0 is full resolution).
        time_axis: the scene's :class:`TimeAxis`.
        pixel_sizes: z, y, x in micrometres at this level (None where unknown).
        channel_names: one name per channel.
        reader: the name of the plugin that opened it.
        uri: where it was opened from.
        scene_index: the scene's position in ``list_scenes``.
        scene_name: a human-readable scene name when the file has one.
        metadata: anything else the plugin wants to expose (format-specific, JSON-friendly).
        labels: named label images of the scene (segmentation targets), each a 5-D TCZYX dask
            array on the same pixel grid as ``data`` (same T, Z, Y, X; its own C), so one crop
            box applies to both. Empty when the file has none.
        origin: physical position of the first voxel, z, y, x in micrometres (OME-NGFF
            ``translation``, a stage position...), None where the file does not say.

    Pickles without open file handles (the readers behind ``data`` reopen lazily).
    """

    data: da.Array
    scene: str
    level: int
    time_axis: TimeAxis
    pixel_sizes: PixelSizes
    channel_names: tuple[str, ...]
    reader: str = ""
    uri: str = ""
    scene_index: int = 0
    scene_name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    labels: Mapping[str, da.Array] = field(default_factory=dict, repr=False, compare=False)
    origin: PixelSizes | None = None

    dims = DIMS

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        t, c, z, y, x = (int(n) for n in self.data.shape)
        return (t, c, z, y, x)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def check(self) -> None:
        """Raise ValueError if the image breaks the ``open_lazy`` contract."""
        where = f"{self.uri} scene {self.scene!r} level {self.level} (reader {self.reader!r})"
        if getattr(self.data, "ndim", None) != 5 or not hasattr(self.data, "dask"):
            raise ValueError(f"{where}: data must be a 5-D dask array (TCZYX), got {self.data!r}")
        if self.time_axis.size != self.data.shape[0]:
            raise ValueError(
                f"{where}: time axis has {self.time_axis.size} timepoints but data has "
                f"{self.data.shape[0]}"
            )
        if len(self.channel_names) != self.data.shape[1]:
            raise ValueError(
                f"{where}: {len(self.channel_names)} channel names for {self.data.shape[1]} "
                "channels"
            )
        for name, label in self.labels.items():
            shape = tuple(getattr(label, "shape", ()))
            if (
                len(shape) != 5
                or shape[:1] + shape[2:] != self.data.shape[:1] + self.data.shape[2:]
            ):
                raise ValueError(
                    f"{where}: label image {name!r} has shape {shape}, which is not on the "
                    f"image's T, Z, Y, X grid {self.data.shape}"
                )
