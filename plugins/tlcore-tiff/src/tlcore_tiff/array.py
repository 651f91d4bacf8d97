"""Read TCZYX regions of one TIFF series level, touching only the pages and segments needed.

A region becomes, per page it touches (one timepoint, channel and plane), either one range read
of the rows it spans (uncompressed contiguous pages: ``os.pread`` locally, an HTTP range
request remotely) or the read and decode of the strips or tiles it overlaps (imagecodecs'
codecs chosen from the level's :class:`~tlcore_tiff.table.PageTable`, or tifffile's own segment
decoder where the table cannot decode the level). So a crop of one plane never decodes another
plane, and a crop of a tiled page decodes only its tiles.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from tlcore import ReaderError, Source
from tlcore.io import objstore
from tlcore.io import prefetch as ahead
from tlcore.lazy import ArrayReader, Region
from tlcore_tiff.fetch import Fetch, fetch_ranges, prefetch_ranges, range_name
from tlcore_tiff.layout import Layout
from tlcore_tiff.meta import SceneMeta
from tlcore_tiff.opening import OpenTiff, fsspec_filesystem
from tlcore_tiff.table import PageTable

_Ranges = list[tuple[int, int]]
_Finish = Callable[[list[Any]], np.ndarray]


class _Decoded:
    """A segment another sample's read decoded and the prefetch cache kept (in place of its
    bytes, in the list of ranges' data a plan's finish receives)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class TiffArrayReader(ArrayReader):
    """TCZYX view of level ``level`` of the scene described by ``meta``.

    Holds plain values (the source, scene and level, the axis layout, the level's
    :class:`~tlcore_tiff.table.PageTable`), so it pickles without handles; the file is reopened,
    read-only, on the first read in each process, and where the table's codec is supported that
    reopening reads nothing (no IFD is parsed again).
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
        # The level's parsed structure travels with the reader (pickled or forked), so a
        # DataLoader worker's first crop costs its tile requests, not a parse of the IFDs.
        self.table: PageTable = meta.tables[level]

    def identity(self) -> tuple[Any, ...]:
        return (self.source.key, self.mode, self.series, self.level)

    def _open(self) -> PageReader:
        try:
            return PageReader(
                self.source, self.ome, self.series, self.level, self.table, self._where()
            )
        except Exception as exc:  # the file changed or vanished since it was opened lazily
            raise ReaderError(
                f"{self._where()}: cannot reopen the file for reading: {type(exc).__name__}: {exc}"
            ) from exc

    def _where(self) -> str:
        return f"{self.source.uri} scene {self.scene_id!r} level {self.level}"

    def prefetch(self, regions: Any, until: int, lane: int = 0) -> None:
        """Fetch the encoded tiles or strips of ``regions`` (TCZYX boxes) into the process's
        :mod:`tlcore.io.prefetch` cache, ahead of their reads, as the same requests that
        each region's read will plan (remote files only; see :mod:`tlcore_tiff.fetch`)."""
        handle = self._own_handle()
        groups = []
        for region in regions:
            if all(s.stop > s.start for s in region):
                groups.append(handle.ranges(self._page_requests(region)))
        handle.prefetch(groups, until, lane)

    def _own_handle(self, handle: PageReader | None = None) -> PageReader:
        handle = self.handle if handle is None else handle
        if handle.pid != os.getpid():
            # Inherited through fork: the parent's connections (and a fallback TiffFile's file
            # position) must not be shared, so this process opens its own channel.
            handle = self._handle = self._open()
        return handle

    def _pages(self, region: Region) -> list[tuple[int, int, int, int]]:
        """(t, z, c, page) of every page ``region`` touches, in read order."""
        rt, rc, rz, _, _ = region
        samples = self.layout.samples
        wanted = []
        for t in range(rt.start, rt.stop):
            for z in range(rz.start, rz.stop):
                for c in range(rc.start // samples, -(-rc.stop // samples)):
                    wanted.append((t, z, c, self.layout.page_index(t, c, z)))
        return wanted

    def _page_requests(self, region: Region) -> list[tuple[int, int, int, int, int]]:
        """The :meth:`PageReader.read_many` requests of ``region``: the read and its prefetch
        plan the same byte ranges from these."""
        _, _, _, ry, rx = region
        return [(page, ry.start, ry.stop, rx.start, rx.stop) for *_, page in self._pages(region)]

    def _read(self, handle: PageReader, region: Region) -> np.ndarray:
        handle = self._own_handle(handle)
        rt, rc, rz, _, _ = region
        out = np.zeros(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        if out.size == 0:
            return out
        samples = self.layout.samples
        wanted = self._pages(region)  # (t, z, c, page): every page the region touches
        try:
            # All pages' bytes in one call: remotely, one concurrent cat_ranges for the crop.
            blocks = handle.read_many(self._page_requests(region))
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


def _close(opened: OpenTiff | None, fd: int | None) -> None:
    if opened is not None:
        opened.close()
    if fd is not None:
        os.close(fd)


class PageReader:
    """One process's read channel on a series level: positional reads of a local file, or range
    requests remotely (all of a crop's in one :func:`~tlcore_tiff.fetch.fetch_ranges` call,
    through obstore where :func:`tlcore.io.objstore.file_store` allows it, else fsspec),
    planned from the level's :class:`~tlcore_tiff.table.PageTable` (offsets and byte counts of
    every tile or strip, parsed once in the process that opened the image).

    Remotely, a tile or strip that a later sample of the process's prefetch plan also needs is
    kept decoded in the prefetch cache after its first decode, and that sample's read takes it
    from there: fetched once, decoded once.

    Where the table's codec is supported, opening it reads nothing (no TiffFile, no IFD) and
    segments are decoded with imagecodecs. Otherwise (``table.codec`` is None) the file is
    opened with tifffile once per process and its keyframe's public ``decode`` is used.
    """

    def __init__(
        self, source: Source, ome: bool, series: int, level: int, table: PageTable, where: str
    ) -> None:
        self.where = where
        self.uri = source.uri
        self.pid = os.getpid()
        self.table = table
        self._fd: int | None = None
        self._fs: Any = None
        self._fetch: Fetch | None = None
        opened: OpenTiff | None = None
        self._tiff_decode: Any = None
        try:
            if table.codec is None:
                opened = OpenTiff(source, ome=ome)
                self._tiff_decode = opened.tf.series[series].levels[level].keyframe.decode
                self._fs = opened.fs
            if source.is_local:
                self._fd = os.open(source.uri, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            else:
                self._fetch = self._remote_fetch(source)
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        self._finalizer = weakref.finalize(self, _close, opened, self._fd)
        self.file_dtype = table.file_dtype
        self.height, self.width = table.height, table.width
        self.samples = table.samples
        self.planar = table.planar
        self.final = table.final
        self.contiguous_offset = table.contiguous_offset
        self.page_bytes = table.page_bytes

    def _remote_fetch(self, source: Source) -> Fetch:
        """This process's range fetch of the remote file: obstore where allowed (until it
        fails a first read that s3fs serves: :class:`tlcore.io.objstore.Trial`), else
        fsspec's ``cat_ranges`` (which retries through the filesystem's own client)."""
        found = objstore.file_store(self.uri, source.storage_options)
        if found is None:
            return self._fsspec_fetch(source)
        store, key, trial = found
        options = source.storage_options

        def through_obstore(starts: list[int], ends: list[int]) -> list[Any]:
            got = objstore.cat_ranges(
                store, key, starts, ends, uri=self.uri, options=options, trial=trial
            )
            doubts = [i for i, d in enumerate(got) if isinstance(d, objstore.ObstoreDoubt)]
            if doubts:
                fallback = self._fsspec_fetch(source)
                again = fallback([starts[i] for i in doubts], [ends[i] for i in doubts])
                if not any(isinstance(d, BaseException) for d in again):
                    trial.abandon(got[doubts[0]])
                    self._fetch = fallback
                for i, data in zip(doubts, again):
                    got[i] = data
            return got

        return through_obstore

    def _fsspec_fetch(self, source: Source) -> Fetch:
        if self._fs is None:
            self._fs = fsspec_filesystem(source)
        fs = self._fs

        def through_fsspec(starts: list[int], ends: list[int]) -> list[Any]:
            return list(fs.cat_ranges([self.uri] * len(starts), starts, ends))

        return through_fsspec

    # -- bytes -------------------------------------------------------------------------------
    def _read_ranges(self, ranges: list[tuple[int, int]]) -> list[Any]:
        """Bytes at each (offset, length), exactly (a short read means a truncated file), or a
        :class:`_Decoded` segment the prefetch cache kept for this read."""
        if not ranges:
            return []
        if self._fd is not None:
            return self._checked(ranges, [os.pread(self._fd, n, off) for off, n in ranges])
        assert self._fetch is not None
        out: list[Any] = [None] * len(ranges)
        cache = ahead.active()
        todo = list(range(len(ranges)))
        if cache is not None:  # segments another sample decoded and left for this one
            todo = []
            for i, (off, n) in enumerate(ranges):
                kept = cache.lookup_decoded(range_name(self.uri, off, n))
                if kept is not None:
                    out[i] = _Decoded(kept)
                else:
                    todo.append(i)
        wanted = [ranges[i] for i in todo]
        for i, data in zip(
            todo, self._checked(wanted, fetch_ranges(self._fetch, self.uri, wanted))
        ):
            out[i] = data
        return out

    def _checked(self, ranges: list[tuple[int, int]], chunks: list[Any]) -> list[bytes]:
        for (off, n), data in zip(ranges, chunks):
            if isinstance(data, BaseException):
                raise data
            if len(data) != n:
                raise ReaderError(
                    f"{self.where}: the file ends before the pixel data at bytes {off:,}-"
                    f"{off + n:,} (got {len(data)} of {n} bytes): it is truncated; copy it again"
                )
        return [bytes(d) for d in chunks]

    # -- pages -------------------------------------------------------------------------------
    def read(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1, columns x0:x1 of page ``index`` as (rows, columns, samples)."""
        return self.read_many([(index, y0, y1, x0, x1)])[0]

    def ranges(self, requests: list[tuple[int, int, int, int, int]]) -> _Ranges:
        """The (offset, length) byte ranges :meth:`read_many` reads for ``requests``, in the
        order it passes them to :meth:`_read_ranges`."""
        return [r for request in requests for r in self._plan(*request)[0]]

    def prefetch(self, groups: list[_Ranges], until: int, lane: int = 0) -> None:
        """Fetch each group of ranges (one group per future :meth:`_read_ranges` call) ahead
        into the process's prefetch cache (:func:`~tlcore_tiff.fetch.prefetch_ranges`); local
        files read nothing ahead."""
        if self._fetch is not None and groups:
            prefetch_ranges(self._fetch, self.uri, groups, until, lane)

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
        table = self.table
        if not table.present[index]:  # a plane the OME-XML lists but the file lacks: zeros
            shape = (y1 - y0, x1 - x0, self.samples)
            return [], lambda _: np.zeros(shape, self.file_dtype.newbyteorder("="))
        if self.final and table.contiguous[index]:
            return self._plan_rows(int(table.offsets[index, 0]), y0, y1, x0, x1)
        return self._plan_segments(index, y0, y1, x0, x1)

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

    def _plan_segments(
        self, page: int, y0: int, y1: int, x0: int, x1: int
    ) -> tuple[_Ranges, _Finish]:
        indices = self.table.segments(y0, y1, x0, x1)
        offsets, counts = self.table.offsets[page], self.table.counts[page]
        wanted = [i for i in indices if counts[i] > 0]
        ranges = [(int(offsets[i]), int(counts[i])) for i in wanted]
        return ranges, lambda parts: self._decode_segments(
            page, indices, dict(zip(wanted, parts)), y0, y1, x0, x1
        )

    def _segment(self, page: int, index: int, data: bytes | _Decoded) -> np.ndarray:
        """Segment ``index`` of ``page`` decoded, as (rows, columns, samples) of the image;
        remotely, kept decoded in the prefetch cache when a later planned sample needs it."""
        if isinstance(data, _Decoded):
            return data.array
        found = self._decode(page, index, data)
        cache = ahead.active() if self._fd is None else None
        if cache is not None:
            offset, count = self.table.offsets[page][index], self.table.counts[page][index]
            cache.keep_decoded(range_name(self.uri, int(offset), int(count)), found)
        return found

    def _decode(self, page: int, index: int, data: bytes) -> np.ndarray:
        if self._tiff_decode is None:
            return self.table.decode(data, index, page)
        segment, _, _ = self._tiff_decode(
            data,
            index,
            jpegtables=self.table.jpegtables.get(page),
            jpegheader=self.table.jpegheader,
        )
        _, _, _, rows, cols = self.table.position(index)
        found: np.ndarray = segment[0][:rows, :cols]  # (length, width, samples) of a 2-D page
        return found

    def _decode_segments(
        self,
        page: int,
        indices: list[int],
        datas: dict[int, Any],
        y0: int,
        y1: int,
        x0: int,
        x1: int,
    ) -> np.ndarray:
        separate = self.samples if self.planar else 1
        contig = 1 if self.planar else self.samples
        out = np.zeros((separate, y1 - y0, x1 - x0, contig), self.file_dtype.newbyteorder("="))
        for i in indices:
            s, sy, sx, rows, cols = self.table.position(i)
            ya, yb = max(y0, sy), min(y1, sy + rows)
            xa, xb = max(x0, sx), min(x1, sx + cols)
            if ya >= yb or xa >= xb:
                continue
            data = datas.get(i)
            if data is None:  # an empty strip or tile (byte count 0): tifffile's nodata value
                out[s, ya - y0 : yb - y0, xa - x0 : xb - x0] = self.table.nodata
                continue
            segment = self._segment(page, i, data)
            out[s, ya - y0 : yb - y0, xa - x0 : xb - x0] = segment[
                ya - sy : yb - sy, xa - sx : xb - sx
            ]
        if self.planar:
            return np.moveaxis(out[..., 0], 0, -1)
        block: np.ndarray = out[0]
        return block
