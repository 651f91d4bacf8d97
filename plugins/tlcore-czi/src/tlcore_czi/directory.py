"""A pure-Python reader for the ZISRAW container of a CZI file: the file header, the subblock
directory, the XML metadata segment and the small XML document of one subblock.

This is what the metadata hooks run on, so ``can_open``, ``list_scenes``, ``levels`` and
``time_axis`` never load libCZI and read a few kilobytes: the file header (512 bytes), the
directory (about 100 bytes per subblock), the metadata XML and, for timestamps, the XML of one
subblock per timepoint (a couple of small reads each; its pixels are never read).

Layout (ZISRAW, all little-endian): every segment starts with a 32-byte header (16-byte id,
allocated size, used size). The file header segment ``ZISRAWFILE`` at offset 0 gives the
positions of the directory (``ZISRAWDIRECTORY``: entry count, 124 reserved bytes, then one
``DV`` entry per subblock) and of the metadata segment (``ZISRAWMETADATA``: XML size,
attachment size, 248 spare bytes, XML). A subblock segment (``ZISRAWSUBBLOCK``) holds metadata
size, attachment size, data size and its own copy of the directory entry, padded to 256 bytes,
then the metadata XML, then the pixels.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

SEGMENT_HEADER = 32
_HEADER = struct.Struct("<16sqq")
_ENTRY_FIXED = struct.Struct("<2siqiiB5si")  # 32 bytes: DV schema up to DimensionCount
_DIM_ENTRY = struct.Struct("<4siifi")  # 20 bytes: name, start, size, start coordinate, stored


class CziFormatError(ValueError):
    """The bytes are not a CZI file, or the file is damaged (truncated, inconsistent)."""


@dataclass(frozen=True)
class SubBlock:
    """One directory entry: where a subblock is and which plane and rectangle it covers.

    ``dims`` maps each non-spatial dimension letter (T, C, Z, S, M, ...) to its start index.
    ``x, y, w, h`` are the logical rectangle (layer-0 pixels); ``stored_w, stored_h`` the pixels
    actually stored (smaller for pyramid subblocks).
    """

    file_position: int
    pixel_type: int
    compression: int
    file_part: int
    dims: dict[str, int]
    x: int
    y: int
    w: int
    h: int
    stored_w: int
    stored_h: int
    entry_size: int

    @property
    def is_layer0(self) -> bool:
        return self.w == self.stored_w and self.h == self.stored_h

    @property
    def zoom_factor(self) -> int:
        """Layer-0 pixels per stored pixel (1 for layer 0, 2 for a 2x pyramid subblock...)."""
        if self.is_layer0 or self.stored_w <= 0 or self.stored_h <= 0:
            return 1
        return max(1, round(max(self.w / self.stored_w, self.h / self.stored_h)))


@dataclass(frozen=True)
class Container:
    """What the container says: file size, the subblocks, the XML metadata document."""

    size: int
    version: tuple[int, int]
    subblocks: tuple[SubBlock, ...]
    metadata_xml: str


ReadAt = Callable[[int, int], bytes]


def _segment(read_at: ReadAt, position: int, expected: bytes, what: str) -> tuple[int, int]:
    raw = read_at(position, SEGMENT_HEADER)
    if len(raw) < SEGMENT_HEADER:
        raise CziFormatError(
            f"the {what} at byte {position} lies past the end of the file: the file is truncated"
        )
    sid, allocated, used = _HEADER.unpack(raw)
    if sid.rstrip(b"\x00") != expected:
        raise CziFormatError(
            f"expected a {expected.decode()} segment for the {what} at byte {position}, found "
            f"{sid.rstrip(bytes(1))!r}: the file is damaged"
        )
    return allocated, used


def sniff(head: bytes) -> bool:
    """Whether ``head`` (the first 16 bytes or more) starts like a CZI file."""
    return head[:10] == b"ZISRAWFILE"


def parse_entry(buf: bytes, offset: int) -> SubBlock:
    """Decode one ``DV`` directory entry at ``offset`` of ``buf``."""
    schema, pixel_type, position, file_part, compression, _pyr, _spare, n_dims = (
        _ENTRY_FIXED.unpack_from(buf, offset)
    )
    if schema != b"DV":
        raise CziFormatError(f"unsupported directory entry schema {schema!r} (expected DV)")
    if not 0 < n_dims <= 32:
        raise CziFormatError(f"a directory entry claims {n_dims} dimensions: the file is damaged")
    dims: dict[str, int] = {}
    x = y = w = h = sw = sh = 0
    pos = offset + _ENTRY_FIXED.size
    for _ in range(n_dims):
        name_raw, start, size, _coord, stored = _DIM_ENTRY.unpack_from(buf, pos)
        pos += _DIM_ENTRY.size
        name = name_raw.rstrip(b"\x00").decode("ascii", "replace")
        if name == "X":
            x, w, sw = start, size, stored
        elif name == "Y":
            y, h, sh = start, size, stored
        else:
            dims[name] = start
    return SubBlock(
        file_position=position,
        pixel_type=pixel_type,
        compression=compression,
        file_part=file_part,
        dims=dims,
        x=x,
        y=y,
        w=w,
        h=h,
        stored_w=sw,
        stored_h=sh,
        entry_size=pos - offset,
    )


def read_container(read_at: ReadAt, size: int) -> Container:
    """Parse the file header, the subblock directory and the metadata XML.

    Also checks that the last subblock of the file ends before the end of the file, so that a
    truncated file is refused here, before any pixel is read, instead of failing (or returning
    background) on the first read of a missing plane.

    Raises:
        CziFormatError: not a CZI file, or a damaged / truncated one.
    """
    head = read_at(0, 512)
    if not sniff(head):
        raise CziFormatError("not a CZI file (no ZISRAWFILE header)")
    if len(head) < 112:
        raise CziFormatError("the CZI file header is incomplete: the file is truncated")
    major, minor = struct.unpack_from("<ii", head, 32)
    file_part = struct.unpack_from("<i", head, 80)[0]
    directory_pos, metadata_pos = struct.unpack_from("<qq", head, 84)
    if file_part != 0:
        raise CziFormatError(
            f"this is part {file_part} of a multi-file CZI; open the first part "
            "(multi-file CZI documents are not supported)"
        )
    if not 0 < directory_pos < size:
        raise CziFormatError(
            f"the subblock directory (byte {directory_pos}) is past the end of the file "
            f"({size} bytes): the file is truncated or was not finished writing"
        )
    _segment(read_at, directory_pos, b"ZISRAWDIRECTORY", "subblock directory")
    (count,) = struct.unpack("<i", read_at(directory_pos + SEGMENT_HEADER, 4))
    if count < 0:
        raise CziFormatError(f"the subblock directory claims {count} entries: file damaged")
    start = directory_pos + SEGMENT_HEADER + 128
    # A DV entry takes 32 + 20 * n bytes; read generously, then exactly what was used.
    buf = read_at(start, count * (_ENTRY_FIXED.size + 20 * _DIM_ENTRY.size))
    entries: list[SubBlock] = []
    offset = 0
    try:
        for _ in range(count):
            entry = parse_entry(buf, offset)
            entries.append(entry)
            offset += entry.entry_size
    except struct.error as exc:
        raise CziFormatError("the subblock directory is cut short: the file is truncated") from exc
    if any(e.file_part != 0 for e in entries):
        raise CziFormatError("subblocks stored in other files of a multi-file CZI: unsupported")
    if entries:
        last = max(entries, key=lambda e: e.file_position)
        _, used = _segment(read_at, last.file_position, b"ZISRAWSUBBLOCK", "last subblock")
        end = last.file_position + SEGMENT_HEADER + used
        if end > size:
            raise CziFormatError(
                f"the last subblock ends at byte {end} but the file has {size} bytes: "
                "the file is truncated (copy it again from the microscope)"
            )
    xml = ""
    if metadata_pos > 0:
        if metadata_pos >= size:
            raise CziFormatError(
                f"the XML metadata (byte {metadata_pos}) is past the end of the file "
                f"({size} bytes): the file is truncated"
            )
        _segment(read_at, metadata_pos, b"ZISRAWMETADATA", "XML metadata")
        xml_size = struct.unpack("<i", read_at(metadata_pos + SEGMENT_HEADER, 4))[0]
        raw = read_at(metadata_pos + SEGMENT_HEADER + 256, xml_size)
        if len(raw) < xml_size:
            raise CziFormatError("the XML metadata is cut short: the file is truncated")
        xml = raw.decode("utf-8", "replace")
    return Container(size, (major, minor), tuple(entries), xml)


def read_subblock_xml(read_at: ReadAt, block: SubBlock) -> str:
    """The metadata XML of one subblock (acquisition time, stage position...); no pixels."""
    _segment(read_at, block.file_position, b"ZISRAWSUBBLOCK", "subblock")
    meta_size = struct.unpack("<i", read_at(block.file_position + SEGMENT_HEADER, 4))[0]
    if meta_size <= 0:
        return ""
    fixed = max(256, 16 + block.entry_size)
    raw = read_at(block.file_position + SEGMENT_HEADER + fixed, meta_size)
    return raw.decode("utf-8", "replace")
