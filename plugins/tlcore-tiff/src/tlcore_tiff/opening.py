"""Open a TIFF read-only, locally or through fsspec, and notice when it is truncated.

tifffile logs, rather than raises, when an IFD or a tag value lies beyond the end of the file,
and carries on with what it could reach; :func:`damage_reports` turns those log records into
an error, so a cut file is never read with the wrong shape.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import tifffile

from tlcore import Source

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: Read-ahead of a remote TIFF opened for tifffile: IFDs and tag values are small and scattered,
#: so small blocks (fsspec's default is 50 MiB for S3: parsing page headers pulled 50 MiB
#: ranges), kept in a small LRU of blocks. Pixel data never goes through it: it is read by
#: byte range (``cat_ranges``).
REMOTE_BLOCK_SIZE = 16 * 1024
REMOTE_CACHE_BLOCKS = 256


def fsspec_filesystem(source: Source) -> Any:
    import fsspec

    # tlcore separates reader options (tiff_dims, tlcore_cache_dir...) from fsspec ones.
    return fsspec.filesystem(source.protocol, **source.fsspec_options())


def read_header(source: Source, length: int = 8) -> bytes:
    """The first bytes of the file (plugin options stripped from what fsspec sees)."""
    if source.is_local:
        with open(source.uri, "rb") as fh:
            return fh.read(length)
    return bytes(fsspec_filesystem(source).cat_file(source.uri, start=0, end=length))


class OpenTiff:
    """A TiffFile opened read-only on a local path or an fsspec file, closed as one."""

    def __init__(self, source: Source, ome: bool) -> None:
        flags: dict[str, Any] = {} if ome else {"is_ome": False}
        self.fs: Any = None
        self._remote: Any = None
        if source.is_local:
            self.tf = tifffile.TiffFile(source.uri, mode="r", **flags)
            return
        self.fs = fsspec_filesystem(source)
        self._remote = self.fs.open(
            source.uri,
            "rb",
            block_size=REMOTE_BLOCK_SIZE,
            cache_type="blockcache",
            cache_options={"maxblocks": REMOTE_CACHE_BLOCKS},
        )
        try:
            self.tf = tifffile.TiffFile(self._remote, mode="r", name=source.name, **flags)
        except BaseException:
            self._remote.close()
            raise

    def close(self) -> None:
        self.tf.close()
        if self._remote is not None:
            self._remote.close()

    def __enter__(self) -> OpenTiff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def damaged(damage: list[str], file_size: int) -> tifffile.TiffFileError:
    return tifffile.TiffFileError(
        f"the file is truncated or damaged: tifffile found {damage[0]} (the file has "
        f"{file_size:,} bytes); copy or download it again"
    )


_DAMAGE = re.compile(r"invalid (?:page|value) offset \d+|corrupted tag list of page \d+")


@contextlib.contextmanager
def damage_reports() -> Iterator[list[str]]:
    """Collect what tifffile logs, in this thread, about IFDs or tag values it cannot reach
    (it logs and carries on rather than raising): the mark of a truncated or damaged file."""
    found: list[str] = []
    thread = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                match = _DAMAGE.search(record.getMessage())
                if match:
                    found.append(match.group(0))

    handler = Collect(logging.WARNING)
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield found
    finally:
        log.removeHandler(handler)


def walk_ifds(tf: tifffile.TiffFile) -> None:
    """Follow the whole IFD chain (a few bytes per page), so that a chain cut by truncation is
    noticed even where tifffile would read only the first page (ImageJ hyperstacks)."""
    len(tf.pages)
