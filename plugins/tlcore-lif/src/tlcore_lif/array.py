"""A LIF image's pixels seen in T, C, Z, Y, X order, memory-mapped read-only.

LIF stores every image uncompressed in one memory block, with a byte stride per dimension and
per channel given in its XML. So the block is memory-mapped once per process and viewed as a
strided (M, T, C, Z, Y, X) array: a crop touches only the pages it covers, in any dimension
order the microscope wrote (XZ line scans, channels inside or outside Z...). A stitched tile
scan copies, per region, the parts of the tiles the region overlaps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlcore import Source
from tlcore.lazy import ArrayReader, Region
from tlcore_lif.metadata import ImageMeta
from tlcore_lif.mosaic import Placement

#: Order of the strided view's axes: the mosaic tile first, then tlcore's TCZYX.
VIEW_AXES = "MTCZYX"
#: Largest extent of one dask chunk along an axis. A chunk is one stored 2-D frame of one
#: timepoint and channel (a YX plane, or the ZX frame of an XZ line scan), and big frames
#: (stitched mosaics) are cut so that a crop does not copy a whole mosaic plane.
MAX_PLANE_CHUNK = 1024


def view_layout(meta: ImageMeta) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Byte offset of pixel 0 in the memory block, and the (M, T, C, Z, Y, X) shape and
    byte strides of the image inside it."""
    shape, strides = [], []
    for code in VIEW_AXES:
        if code == "C":
            shape.append(len(meta.channel_offsets))
            strides.append(meta.channel_stride)
        else:
            axis = meta.axis(code)
            shape.append(axis.size if axis is not None else 1)
            strides.append(axis.stride if axis is not None and axis.size > 1 else 0)
    return meta.channel_offsets[0], tuple(shape), tuple(strides)


def layout_extent(offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> range:
    """The byte range (within the block, itemsize excluded) that the strided view spans."""
    low = offset + sum(min(0, (n - 1) * s) for n, s in zip(shape, strides))
    high = offset + sum(max(0, (n - 1) * s) for n, s in zip(shape, strides))
    return range(low, high + 1)


def frame_axes(meta: ImageMeta) -> str:
    """The spatial axes of the stored 2-D frame, the microscope's unit of acquisition: the two
    innermost stored axes among Z, Y, X (Y and X for images, Z and X for XZ line scans)."""
    spatial = sorted(
        (a for a in meta.axes if a.code in "ZYX" and a.size > 1), key=lambda a: a.stride
    )
    return "".join(a.code for a in spatial[:2]) or "X"


class LifArrayReader(ArrayReader):
    """Reads TCZYX regions of one LIF image: one tile, an untiled image, or a stitched scan.

    Holds plain numbers only (the memory map is the per-process handle, dropped on pickling).
    """

    def __init__(
        self,
        source: Source,
        meta: ImageMeta,
        *,
        tile: int = 0,
        plan: tuple[Placement, ...] | None = None,
        stitched_yx: tuple[int, int] | None = None,
    ) -> None:
        assert meta.dtype is not None
        self.source = source
        self.scene_path = meta.path
        self.block_offset = meta.block_offset
        self.block_size = meta.block_size
        self.view_offset, self.view_shape, self.view_strides = view_layout(meta)
        self.tile = tile
        self.plan = plan
        _, t, c, z, y, x = self.view_shape
        if plan is not None and stitched_yx is not None:
            y, x = stitched_yx
        frame = frame_axes(meta)
        sizes = {"Z": z, "Y": y, "X": x}
        cz, cy, cx = (min(sizes[a], MAX_PLANE_CHUNK) if a in frame else 1 for a in "ZYX")
        super().__init__(shape=(t, c, z, y, x), dtype=meta.dtype, chunks=(1, 1, cz, cy, cx))

    def identity(self) -> tuple[Any, ...]:
        mode = "stitched" if self.plan is not None else f"tile {self.tile}"
        return (self.source.key, self.scene_path, mode)

    def _open(self) -> np.ndarray:
        block = np.memmap(
            self.source.uri, dtype=np.uint8, mode="r", offset=self.block_offset,
            shape=(self.block_size,),
        )  # fmt: skip
        return np.ndarray(
            self.view_shape,
            dtype=self.dtype.newbyteorder("<"),  # LIF is little-endian
            buffer=block,
            offset=self.view_offset,
            strides=self.view_strides,
        )

    def _read(self, handle: np.ndarray, region: Region) -> np.ndarray:
        t, c, z, y, x = region
        if self.plan is None:
            return np.array(handle[self.tile, t, c, z, y, x], dtype=self.dtype)
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        for p in self.plan:
            y0, y1 = max(y.start, p.dst_y), min(y.stop, p.dst_y + p.height)
            x0, x1 = max(x.start, p.dst_x), min(x.stop, p.dst_x + p.width)
            if y0 >= y1 or x0 >= x1:
                continue
            sy, sx = p.src_y + y0 - p.dst_y, p.src_x + x0 - p.dst_x
            out[..., y0 - y.start : y1 - y.start, x0 - x.start : x1 - x.start] = handle[
                p.tile, t, c, z, sy : sy + y1 - y0, sx : sx + x1 - x0
            ]
        return out
