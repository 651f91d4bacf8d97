"""Read TCZYX regions of one TIFF series level, touching only the pages and segments needed.

A region becomes, per page it touches (one timepoint, channel and plane), either one range read
of the rows it spans (uncompressed contiguous pages: ``os.pread`` locally, an HTTP range
request remotely) or the read and decode of the strips or tiles it overlaps, with tifffile's own
segment decoder. So a crop of one plane never decodes another plane, and a crop of a tiled page
decodes only its tiles.
"""

from __future__ import annotations

import bisect
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from tlcore import ReaderError, Source
from tlcore.lazy import ArrayReader, Region
from tlcore_tiff.layout import Layout
from tlcore_tiff.meta import SceneMeta
from tlcore_tiff.opening import OpenTiff

#: Remote byte ranges this close (bytes, and at most the mean range length apart) are fetched
#: as one request.
MERGE_GAP = 32 * 1024

_Ranges = list[tuple[int, int]]
_Finish = Callable[[list[bytes]], np.ndarray]


class TiffArrayReader(ArrayReader):
    """TCZYX view of level ``level`` of the scene described by ``meta``.

    Holds only plain values (the source, scene and level, the axis layout), so it pickles small;
    the file is reopened, read-only, on the first read in each process.
    """

    def __init__(self, source: Source, mode: str, meta: SceneMeta, level: int) -> None:
        assert meta.layout is not None
        lv = meta.levels[level]
        super().__init__(lv.shape, meta.dtype, lv.chunks)
        self.source = source
        self.mode = mode
        self.scene_id = meta.id
        self.series = meta.series
        self.level = level
        self.layout: Layout = meta.layout
        self.ome = meta.kind == "ome"

    def identity(self) -> tuple[Any, ...]:
        return (self.source.key, self.mode, self.series, self.level)

    def _open(self) -> PageReader:
        try:
            return PageReader(self.source, self.ome, self.series, self.level, self._where())
        except Exception as exc:  # the file changed or vanished since it was opened lazily
            raise ReaderError(
                f"{self._where()}: cannot reopen the file for reading: {type(exc).__name__}: {exc}"
            ) from exc

    def _where(self) -> str:
        return f"{self.source.uri} scene {self.scene_id!r} level {self.level}"

    def _read(self, handle: PageReader, region: Region) -> np.ndarray:
        if handle.pid != os.getpid():
            # Inherited through fork: the TiffFile's file position would be shared with the
            # parent, so this process opens its own.
            handle = self._handle = self._open()
        rt, rc, rz, ry, rx = region
        out = np.zeros(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        if out.size == 0:
            return out
        samples = self.layout.samples
        wanted = []  # (t, z, c, page): every page the region touches
        for t in range(rt.start, rt.stop):
            for z in range(rz.start, rz.stop):
                for c in range(rc.start // samples, -(-rc.stop // samples)):
                    wanted.append((t, z, c, self.layout.page_index(t, c, z)))
        try:
            # All pages' bytes in one call: remotely, one concurrent cat_ranges for the crop.
            blocks = handle.read_many(
                [(page, ry.start, ry.stop, rx.start, rx.stop) for *_, page in wanted]
            )
        except ReaderError:
            raise
        except Exception as exc:
            pages = sorted({page for *_, page in wanted})
            which = f"page {pages[0]}" if len(pages) == 1 else f"pages {pages[0]}-{pages[-1]}"
            raise ReaderError(
                f"{self._where()}: reading {which} failed: "
                f"{type(exc).__name__}: {exc}. The file may be damaged or truncated."
            ) from exc
        for (t, z, c, _), block in zip(wanted, blocks):
            s0 = max(rc.start, c * samples)
            s1 = min(rc.stop, (c + 1) * samples)
            block = block[..., s0 - c * samples : s1 - c * samples]
            out[t - rt.start, s0 - rc.start : s1 - rc.start, z - rz.start] = np.moveaxis(
                block, -1, 0
            )
        return out


def _close(opened: OpenTiff, fd: int | None) -> None:
    opened.close()
    if fd is not None:
        os.close(fd)


class PageReader:
    """One process's open handle on a series level: the TiffFile (for page lookups and the
    segment decoder) plus a positional-read channel for pixel bytes."""

    def __init__(self, source: Source, ome: bool, series: int, level: int, where: str) -> None:
        self.where = where
        self.uri = source.uri
        self.pid = os.getpid()
        opened = OpenTiff(source, ome=ome)
        self._fd: int | None = None
        try:
            tf = opened.tf
            self.series = tf.series[series].levels[level]
            self.keyframe = self.series.keyframe
            if source.is_local:
                self._fd = os.open(source.uri, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except BaseException:
            opened.close()
            raise
        self._fs = opened.fs
        self._finalizer = weakref.finalize(self, _close, opened, self._fd)
        self._lock = threading.RLock()  # tifffile's page cache and file position
        kf = self.keyframe
        self.file_dtype = kf.dtype.newbyteorder(tf.byteorder)
        self.height, self.width = int(kf.imagelength), int(kf.imagewidth)
        self.samples = int(kf.samplesperpixel)
        self.planar = self.samples > 1 and kf.planarconfig == 2
        self.final = bool(kf.is_final)
        offset = self.series.dataoffset
        self.contiguous_offset = int(offset) if offset is not None and self.final else None
        self.page_bytes = int(kf.nbytes)
        self.decode = kf.decode
        self.jpegheader = getattr(kf, "jpegheader", None)

    # -- bytes -------------------------------------------------------------------------------
    def _read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Bytes at each (offset, length), exactly; a short read means a truncated file."""
        if not ranges:
            return []
        if self._fd is not None:
            chunks = [os.pread(self._fd, n, off) for off, n in ranges]
        else:
            chunks = self._fetch_merged(ranges)
        for (off, n), data in zip(ranges, chunks):
            if isinstance(data, BaseException):
                raise data
            if len(data) != n:
                raise ReaderError(
                    f"{self.where}: the file ends before the pixel data at bytes {off:,}-"
                    f"{off + n:,} (got {len(data)} of {n} bytes): it is truncated; copy it again"
                )
        return [bytes(d) for d in chunks]

    def _fetch_merged(self, ranges: list[tuple[int, int]]) -> list[Any]:
        """The bytes of each range from one concurrent ``cat_ranges`` call, ranges closer than
        :data:`MERGE_GAP` (and than their mean length) merged into one request: neighbouring
        tiles of a row, strips of consecutive pages with only an IFD between them. A request
        costs far more than the few bytes between them."""
        from fsspec.utils import merge_offset_ranges

        spans = sorted({(off, off + n) for off, n in ranges})
        _, starts, ends = merge_offset_ranges(
            [self.uri] * len(spans),
            [a for a, _ in spans],
            [b for _, b in spans],
            # never a gap above the mean range: small tiles are not merged across larger gaps
            max_gap=min(MERGE_GAP, sum(b - a for a, b in spans) // len(spans)),
            sort=False,
        )
        blocks = list(self._fs.cat_ranges([self.uri] * len(starts), starts, ends))
        out: list[Any] = []
        for off, n in ranges:
            i = bisect.bisect_right(starts, off) - 1
            block = blocks[i]
            if isinstance(block, BaseException):
                out.append(block)
            else:
                out.append(block[off - starts[i] : off - starts[i] + n])
        return out

    # -- pages -------------------------------------------------------------------------------
    def _page(self, index: int) -> Any:
        with self._lock:
            return self.series._getitem(index)

    def read(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1, columns x0:x1 of page ``index`` as (rows, columns, samples)."""
        return self.read_many([(index, y0, y1, x0, x1)])[0]

    def read_many(self, requests: list[tuple[int, int, int, int, int]]) -> list[np.ndarray]:
        """:meth:`read` for each ``(index, y0, y1, x0, x1)``, with the bytes of all of them
        fetched in one :meth:`_read_ranges` call (one concurrent ``cat_ranges`` remotely)."""
        plans = [self._plan(*request) for request in requests]
        datas = self._read_ranges([r for ranges, _ in plans for r in ranges])
        out, at = [], 0
        for ranges, finish in plans:
            out.append(finish(datas[at : at + len(ranges)]))
            at += len(ranges)
        return out

    def _plan(self, index: int, y0: int, y1: int, x0: int, x1: int) -> tuple[_Ranges, _Finish]:
        """The byte ranges that rows y0:y1, columns x0:x1 of page ``index`` need, and how to
        turn their bytes into the block."""
        if self.contiguous_offset is not None:
            return self._plan_rows(self.contiguous_offset + index * self.page_bytes, y0, y1, x0, x1)
        page = self._page(index)
        if page is None:  # a plane the OME-XML lists but the file does not hold: zeros
            shape = (y1 - y0, x1 - x0, self.samples)
            return [], lambda _: np.zeros(shape, self.file_dtype.newbyteorder("="))
        if self.final and page.is_contiguous:
            return self._plan_rows(int(page.dataoffsets[0]), y0, y1, x0, x1)
        return self._plan_segments(page, y0, y1, x0, x1)

    def _plan_rows(self, base: int, y0: int, y1: int, x0: int, x1: int) -> tuple[_Ranges, _Finish]:
        item = self.file_dtype.itemsize
        if not self.planar:
            row = self.width * self.samples * item

            def rows(parts: list[bytes]) -> np.ndarray:
                block = np.frombuffer(parts[0], self.file_dtype)
                return block.reshape(y1 - y0, self.width, self.samples)[:, x0:x1]

            return [(base + y0 * row, (y1 - y0) * row)], rows
        plane = self.height * self.width * item
        row = self.width * item

        def planes(parts: list[bytes]) -> np.ndarray:
            found = [np.frombuffer(p, self.file_dtype).reshape(y1 - y0, self.width) for p in parts]
            return np.stack(found, axis=-1)[:, x0:x1]

        ranges = [(base + s * plane + y0 * row, (y1 - y0) * row) for s in range(self.samples)]
        return ranges, planes

    def _segments(self, y0: int, y1: int, x0: int, x1: int) -> list[int]:
        """Indices of the strips or tiles that overlap rows y0:y1 and columns x0:x1."""
        kf = self.keyframe
        separate = self.samples if self.planar else 1
        if kf.is_tiled:
            th, tw = int(kf.tilelength), int(kf.tilewidth)
            across = -(-self.width // tw)
            down = -(-self.height // th)
            return [
                (s * down + ty) * across + tx
                for s in range(separate)
                for ty in range(y0 // th, (y1 - 1) // th + 1)
                for tx in range(x0 // tw, (x1 - 1) // tw + 1)
            ]
        rps = max(1, min(int(kf.rowsperstrip), self.height))
        strips = -(-self.height // rps)
        return [
            s * strips + sy for s in range(separate) for sy in range(y0 // rps, (y1 - 1) // rps + 1)
        ]

    def _plan_segments(
        self, page: Any, y0: int, y1: int, x0: int, x1: int
    ) -> tuple[_Ranges, _Finish]:
        indices = self._segments(y0, y1, x0, x1)
        offsets, counts = page.dataoffsets, page.databytecounts
        wanted = [i for i in indices if counts[i] > 0]
        ranges = [(int(offsets[i]), int(counts[i])) for i in wanted]
        return ranges, lambda parts: self._decode_segments(
            page, indices, dict(zip(wanted, parts)), y0, y1, x0, x1
        )

    def _decode_segments(
        self,
        page: Any,
        indices: list[int],
        datas: dict[int, bytes],
        y0: int,
        y1: int,
        x0: int,
        x1: int,
    ) -> np.ndarray:
        separate = self.samples if self.planar else 1
        contig = 1 if self.planar else self.samples
        out = np.zeros((separate, y1 - y0, x1 - x0, contig), self.file_dtype.newbyteorder("="))
        jpegtables = getattr(page, "jpegtables", None)
        for i in indices:
            data = datas.get(i)
            segment, (s, _, sy, sx, _), _shape = self.decode(
                data, i, jpegtables=jpegtables, jpegheader=self.jpegheader
            )
            if segment is None:  # an empty strip or tile: tifffile's nodata value
                fill = self.keyframe.nodata
                seg_h, seg_w = _shape[1], _shape[2]
                ya, yb = max(y0, sy), min(y1, sy + seg_h)
                xa, xb = max(x0, sx), min(x1, sx + seg_w)
                if ya < yb and xa < xb:
                    out[s, ya - y0 : yb - y0, xa - x0 : xb - x0] = fill
                continue
            segment = segment[0]  # (length, width, samples) of a 2-D page
            ya, yb = max(y0, sy), min(y1, sy + segment.shape[0], self.height)
            xa, xb = max(x0, sx), min(x1, sx + segment.shape[1], self.width)
            if ya < yb and xa < xb:
                out[s, ya - y0 : yb - y0, xa - x0 : xb - x0] = segment[
                    ya - sy : yb - sy, xa - sx : xb - sx
                ]
        if self.planar:
            return np.moveaxis(out[..., 0], 0, -1)
        block: np.ndarray = out[0]
        return block
