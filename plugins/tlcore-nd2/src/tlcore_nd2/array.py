"""One ND2 scene seen as a TCZYX array, read frame by frame through nd2's frame access."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import nd2
import numpy as np

from tlcore import ReaderError, Source
from tlcore.lazy import ArrayReader, Region
from tlcore_nd2 import handles
from tlcore_nd2.metadata import FileMeta, load

#: Uncompressed frames larger than this are split into YX tiles of ``TILE`` pixels: a memory-
#: mapped frame reads only the pages a crop touches, so smaller dask chunks cost nothing and
#: keep one task from materialising a whole huge frame.
TILE_ABOVE_BYTES = 32 * 2**20
TILE = 2048


class FrameFile:
    """An open ND2 file for one process.

    A forked DataLoader worker inherits its parent's open file; the uncompressed path reads
    through a shared read-only memory map, which is safe, but compressed frames are read with
    seek + read on a shared file offset. So the file is reopened whenever the process id
    changes. Closed quietly when garbage-collected (nd2 warns about files left open).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pid = -1
        self._file: nd2.ND2File | None = None

    def get(self) -> nd2.ND2File:
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            with self._lock:
                if self._file is None or self._pid != pid:
                    handle = handles.take(self.path)
                    weakref.finalize(self, handle.close)
                    self._file, self._pid = handle, pid
        return self._file

    def frame(self, index: int, frame_channels: int, samples: int) -> np.ndarray:
        """Frame ``index`` as a (channels, Y, X, samples) view: for an uncompressed file this
        is a view of the memory map, so slicing it before copying reads only touched pages."""
        f = self.get()
        data = f.read_frame(index)  # (C, Y, X, S) with size-1 axes squeezed away
        shape = (frame_channels, f.attributes.heightPx, f.attributes.widthPx, samples)
        # Only size-1 axes are re-inserted, so this reshape is always a view.
        view: np.ndarray = data.reshape(shape)
        return view


class ND2ArrayReader(ArrayReader):
    """TCZYX regions of one ND2 scene (stage position).

    Chunks are one frame, (1, C, 1, Y, X), each the read unit of the file; very large
    uncompressed frames are also tiled in Y and X. A region reads, for each (T, Z) it spans,
    one frame and copies out only the requested channels and Y/X window.
    """

    def __init__(self, source: Source, scene: int, meta: FileMeta) -> None:
        self.source = source
        self.scene = scene
        self.scene_id = meta.scene_ids[scene]
        self.frame_channels = meta.frame_channels
        self.samples = meta.samples
        self.sizes = dict(meta.sizes)
        self.strides = dict(meta.strides)
        _, c, _, y, x = meta.shape
        itemsize = np.dtype(meta.dtype).itemsize
        tiled = not meta.compressed and c * y * x * itemsize > TILE_ABOVE_BYTES
        ty, tx = (min(y, TILE), min(x, TILE)) if tiled else (y, x)
        super().__init__(shape=meta.shape, dtype=meta.dtype, chunks=(1, c, 1, ty, tx))

    def identity(self) -> tuple[Any, ...]:
        return (self.source.key, self.scene)

    def _open(self) -> FrameFile:
        # Re-check the frames against the file as it is now (a pickled reader may reopen a
        # file that changed since): a missing frame must be an error, never zeros.
        load(self.source).check_scene(self.scene)
        return FrameFile(self.source.uri)

    def _frame_index(self, t: int, z: int) -> int:
        s = self.strides
        return t * s["T"] + self.scene * s["P"] + z * s["Z"]

    def _read(self, handle: FrameFile, region: Region) -> np.ndarray:
        ts, cs, zs, ys, xs = region
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        if out.size == 0:
            return out
        s_count = self.samples
        # The frame channels that hold the requested output channels (sample-major within).
        f0, f1 = cs.start // s_count, -(-cs.stop // s_count)
        g0 = cs.start - f0 * s_count
        for ti, t in enumerate(range(ts.start, ts.stop)):
            for zi, z in enumerate(range(zs.start, zs.stop)):
                try:
                    frame = handle.frame(self._frame_index(t, z), self.frame_channels, s_count)
                except (ValueError, OSError, TypeError) as exc:
                    raise ReaderError(
                        f"{self.source.uri} scene {self.scene_id!r}: reading frame T={t}, "
                        f"Z={z} failed ({type(exc).__name__}: {exc}); the file may be damaged"
                    ) from exc
                window = frame[f0:f1, ys, xs, :]  # still a view: nothing copied yet
                if s_count == 1:
                    out[ti, :, zi] = window[..., 0]
                else:  # samples become channels: (C, Y, X, S) -> (C*S, Y, X)
                    merged = window.transpose(0, 3, 1, 2).reshape(-1, *window.shape[1:3])
                    out[ti, :, zi] = merged[g0 : g0 + out.shape[1]]
        return out
