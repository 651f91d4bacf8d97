"""What a pickled lazy image carries: its size, and any arrays or memory maps inside it.

A pickled image is metadata: DataLoader workers receive it once per worker, and a reader that
keeps pixels (an array, a memory map, the file's bytes) on itself ships them to every worker or,
for a memory map, pickles the whole mapped file.
"""

from __future__ import annotations

import io
import mmap
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PickleScan:
    """The pickle of an object and the array-like things found while pickling it."""

    size: int
    arrays: list[str] = field(default_factory=list)  # "memmap (53, 64, 64) uint16, 434 KB"
    pixel_like: list[str] = field(default_factory=list)  # arrays that look like pixels


class _ScanningPickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, plane: int, dtype: np.dtype[Any]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.plane = plane
        self.dtype = dtype
        self.scan = PickleScan(0)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, mmap.mmap):
            self.scan.arrays.append(f"mmap.mmap of {len(obj)} bytes")
            self.scan.pixel_like.append(self.scan.arrays[-1])
        elif isinstance(obj, np.ndarray):
            kind = "numpy.memmap" if isinstance(obj, np.memmap) else "numpy array"
            what = f"{kind} {obj.shape} {obj.dtype}, {obj.nbytes} bytes"
            self.scan.arrays.append(what)
            # A memory map is the file itself; an array of the image's dtype holding at least
            # one YX plane is pixels. Small lookup tables (offsets, timestamps) are metadata.
            if isinstance(obj, np.memmap) or (obj.dtype == self.dtype and obj.size >= self.plane):
                self.scan.pixel_like.append(what)
        return NotImplemented


def scan_pickle(obj: Any, plane: int, dtype: Any) -> tuple[bytes, PickleScan]:
    """Pickle ``obj`` and report the arrays met on the way. ``plane`` is the number of pixels in
    one YX plane of the image and ``dtype`` its dtype: arrays like that count as pixels."""
    buffer = io.BytesIO()
    pickler = _ScanningPickler(buffer, plane, np.dtype(dtype))
    pickler.dump(obj)
    blob = buffer.getvalue()
    pickler.scan.size = len(blob)
    return blob, pickler.scan
