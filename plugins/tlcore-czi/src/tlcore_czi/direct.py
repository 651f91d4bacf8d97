"""Reading rectangles of uncompressed CZI subblocks straight from the file.

libCZI reads and decodes every subblock a ROI touches in full: on a file stored as one subblock
per 2048 x 2048 plane, a 64 x 64 crop costs 64 whole planes. An uncompressed subblock is a plain
row-major array (``stored_h`` rows of ``stored_w`` pixels of ``samples`` samples) at a known
file offset, so its rows and columns can be read with positional reads, as the TIFF plugin does.

Only the case that is exact without composing is served here: one uncompressed full-resolution
subblock of the plane overlaps the rectangle and covers it whole. Anything else (several
overlapping mosaic tiles, background, compressed or padded subblocks) returns None and is read
through libCZI, which composes and decodes as ZEN does.
"""

from __future__ import annotations

import os
import struct
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from tlcore_czi.directory import SEGMENT_HEADER, SubBlock

UNCOMPRESSED = 0
#: Below this fraction of a stored row, a crop's columns are read row by row (one positional
#: read per row) rather than as one span of whole rows.
ROW_BY_ROW_FRACTION = 0.5

PlaneKey = tuple[int, int, int]


def _close(fd: int) -> None:
    os.close(fd)


class DirectPlanes:
    """One process's handle on a CZI scene: positional reads of uncompressed subblocks, and
    pylibCZIrw's reader (opened on first need) for everything else."""

    def __init__(self, path: str, blocks: Sequence[SubBlock], dtype: Any, samples: int) -> None:
        self.path = path
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.samples = samples
        self.planes: dict[PlaneKey, list[SubBlock]] = {}
        for b in blocks:
            key = (b.dims.get("T", 0), b.dims.get("C", 0), b.dims.get("Z", 0))
            self.planes.setdefault(key, []).append(b)
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._finalizer = weakref.finalize(self, _close, self._fd)
        self._data_at: dict[int, int | None] = {}
        self._czi: Any = None
        self._lock = threading.Lock()

    @property
    def czi(self) -> Any:
        """pylibCZIrw's reader of the file (read-only), opened on first use."""
        if self._czi is None:
            from pylibCZIrw import czi as pyczi

            with self._lock:
                if self._czi is None:
                    self._czi = pyczi.CziReader(self.path)
        return self._czi

    def _data_offset(self, block: SubBlock) -> int | None:
        """File offset of the subblock's pixels, or None when they are not the plain array
        ``stored_h x stored_w x samples`` (a stride with padding: let libCZI read it)."""
        if block.file_position in self._data_at:
            return self._data_at[block.file_position]
        head = os.pread(self._fd, 16, block.file_position + SEGMENT_HEADER)
        offset: int | None = None
        if len(head) == 16:
            meta_size, _attachment_size, data_size = struct.unpack("<iiq", head)
            fixed = max(256, 16 + block.entry_size)
            expected = block.stored_h * block.stored_w * self.samples * self.dtype.itemsize
            if data_size == expected and meta_size >= 0:
                offset = block.file_position + SEGMENT_HEADER + fixed + meta_size
        self._data_at[block.file_position] = offset
        return offset

    def covering(self, plane: dict[str, int], roi: tuple[int, int, int, int]) -> SubBlock | None:
        """The one uncompressed layer-0 subblock of ``plane`` that covers ``roi`` (x, y, w, h)
        and is the only one to touch it; None otherwise."""
        x, y, w, h = roi
        key = (plane.get("T", 0), plane.get("C", 0), plane.get("Z", 0))
        touching = [
            b
            for b in self.planes.get(key, ())
            if b.x < x + w and x < b.x + b.w and b.y < y + h and y < b.y + b.h
        ]
        if len(touching) != 1:
            return None
        b = touching[0]
        inside = b.x <= x and x + w <= b.x + b.w and b.y <= y and y + h <= b.y + b.h
        if not inside or b.compression != UNCOMPRESSED or not b.is_layer0:
            return None
        return b

    def read(self, plane: dict[str, int], roi: tuple[int, int, int, int]) -> np.ndarray | None:
        """The rectangle ``roi`` (layer-0 x, y, w, h) of ``plane`` as (h, w, samples) in the
        file's sample order, read from the file; None when libCZI must read it."""
        block = self.covering(plane, roi)
        if block is None:
            return None
        base = self._data_offset(block)
        if base is None:
            return None
        x, y, w, h = roi
        pixel = self.samples * self.dtype.itemsize
        row = block.stored_w * pixel
        first = base + (y - block.y) * row + (x - block.x) * pixel
        if w * pixel < ROW_BY_ROW_FRACTION * row:
            parts = [os.pread(self._fd, w * pixel, first + i * row) for i in range(h)]
            data = b"".join(parts)
            if len(data) != h * w * pixel:
                raise OSError(f"{self.path}: the file ends inside a subblock: it is truncated")
            out = np.frombuffer(data, self.dtype).reshape(h, w, self.samples)
        else:
            span = (h - 1) * row + w * pixel
            data = os.pread(self._fd, span, first)
            if len(data) != span:
                raise OSError(f"{self.path}: the file ends inside a subblock: it is truncated")
            flat = np.frombuffer(data + bytes(row - w * pixel), self.dtype)
            out = flat.reshape(h, row // self.dtype.itemsize)[:, : w * self.samples]
            out = out.reshape(h, w, self.samples)
        return out.astype(self.dtype.newbyteorder("="), copy=False)
