"""A LIF file's images as plain values: axes with byte strides, channels, tiles, timestamps.

liffile finds the images, their XML elements and their memory blocks (offset and size in the
file); the XML of each image is read here, so that everything the reader needs to address a
pixel is a plain, picklable number. Nothing here reads pixels.
"""

from __future__ import annotations

import functools
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from tlcore import Source

#: LIF DimID to axis code (as liffile names them). 5 and 9 are the lambda dimensions.
DIM_CODES = {1: "X", 2: "Y", 3: "Z", 4: "T", 5: "λ", 6: "A", 7: "N", 8: "Q", 9: "Λ", 10: "M"}
DIM_WORDS = {
    "λ": "a lambda (emission wavelength) dimension",
    "Λ": "a lambda (excitation wavelength) dimension",
    "A": "a rotation dimension",
    "N": "an XT-slice dimension",
    "Q": "a T-slice dimension",
    "L": "a loop dimension",
}
LENGTH_TO_UM = {"m": 1e6, "mm": 1e3, "um": 1.0, "µm": 1.0, "\u03bcm": 1.0, "nm": 1e-3}
TIME_TO_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0, "h": 3600.0}
#: FILETIME ticks (100 ns) per second.
TICKS = 10_000_000


class LifFormatError(ValueError):
    """A LIF file or image that this plugin cannot read; the message says what and why."""


@dataclass(frozen=True)
class Axis:
    """One stored dimension: its LIF code, size, byte stride and physical extent."""

    code: str
    size: int
    stride: int
    origin: float
    length: float
    unit: str

    def step_um(self) -> float | None:
        """Physical pixel size in micrometres: |Length| / (n - 1), as liffile, readlif and
        bioio compute it. A negative Length (a Z stack acquired downwards) gives the direction
        of the axis, not a negative size; its absolute value is the size."""
        factor = LENGTH_TO_UM.get(self.unit)
        if factor is None or self.size < 2 or not math.isfinite(self.length) or not self.length:
            return None
        return abs(self.length) * factor / (self.size - 1)


@dataclass(frozen=True)
class Tile:
    """One tile of a tile scan: its grid field and its stage position in metres."""

    field_x: int
    field_y: int
    pos_x: float
    pos_y: float
    pos_z: float


@dataclass(frozen=True)
class ImageMeta:
    """One LIF image. ``problem`` says why it cannot be read as TCZYX (None when it can)."""

    index: int
    path: str
    name: str
    dtype: str | None
    axes: tuple[Axis, ...]
    channel_names: tuple[str, ...]
    channel_offsets: tuple[int, ...]
    block_id: str
    block_offset: int
    block_size: int
    tiles: tuple[Tile, ...]
    timestamps: tuple[int, ...] | None
    problem: str | None = None

    def axis(self, code: str) -> Axis | None:
        return next((a for a in self.axes if a.code == code), None)

    def size(self, code: str) -> int:
        found = self.axis(code)
        return found.size if found is not None else 1

    @property
    def n_tiles(self) -> int:
        return self.size("M")

    @property
    def channel_stride(self) -> int:
        offsets = self.channel_offsets
        return offsets[1] - offsets[0] if len(offsets) > 1 else 0


@dataclass(frozen=True)
class FileMeta:
    uri: str
    file_size: int
    images: tuple[ImageMeta, ...]


def read_file(source: Source) -> FileMeta:
    """Parse ``source`` (cached per path, size and modification time)."""
    if not source.is_local:
        raise LifFormatError(
            f"{source.uri}: the lif reader needs a local file (it memory-maps planes); "
            "copy the file locally first"
        )
    st = os.stat(source.uri)
    return _read_file(source.uri, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_file(uri: str, size: int, mtime_ns: int) -> FileMeta:
    import liffile

    try:
        lif = liffile.LifFile(uri, mode="r")
    except Exception as exc:
        raise LifFormatError(
            f"{uri}: not a readable Leica LIF file ({type(exc).__name__}: {exc}); the file may "
            "be truncated or corrupted"
        ) from exc
    with lif:
        if lif.type != liffile.LifFileType.LIF:
            raise LifFormatError(f"{uri}: a Leica {lif.type.name} file, not a LIF file")
        images = tuple(_image(i, im, size) for i, im in enumerate(lif.images))
    if not images:
        raise LifFormatError(f"{uri}: the LIF file holds no images")
    return FileMeta(uri, size, images)


def _image(index: int, image: object, file_size: int) -> ImageMeta:
    element: ET.Element = image.xml_element  # type: ignore[attr-defined]
    path: str = image.path  # type: ignore[attr-defined]
    name = element.attrib.get("Name", path)
    axes = _axes(element)
    channels = element.findall("./Data/Image/ImageDescription/Channels/ChannelDescription")
    names = tuple(c.attrib.get("LUTName", "") for c in channels)
    offsets = tuple(int(c.attrib.get("BytesInc", "0")) for c in channels)
    problem = None
    dtype = None
    block_id, block_offset, block_size = "", -1, 0
    if element.find("./Data/Image") is None:
        problem = "it is a FLIM/TCSPC histogram image, not an intensity image"
    else:
        dtype, problem = _dtype(channels)
        problem = problem or _axes_problem(axes, offsets)
        memory = element.find("./Memory")
        block_id = memory.get("MemoryBlockID", "") if memory is not None else ""
        try:
            block = image.memory_block  # type: ignore[attr-defined]
            block_offset, block_size = int(block.offset), int(block.size)
        except (KeyError, IndexError):
            problem = problem or (
                f"its pixel data (memory block {block_id!r}) is missing from the file, which "
                "is probably truncated (an incomplete copy or download?)"
            )
    return ImageMeta(
        index=index,
        path=path,
        name=name,
        dtype=dtype,
        axes=axes,
        channel_names=names,
        channel_offsets=offsets,
        block_id=block_id,
        block_offset=block_offset,
        block_size=block_size,
        tiles=_tiles(element),
        timestamps=_timestamps(element),
        problem=problem,
    )


def _axes(element: ET.Element) -> tuple[Axis, ...]:
    out = []
    for dim in element.findall("./Data/Image/ImageDescription/Dimensions/DimensionDescription"):
        dim_id = int(dim.attrib["DimID"])
        out.append(
            Axis(
                code=DIM_CODES.get(dim_id, f"?{dim_id}"),
                size=int(dim.attrib["NumberOfElements"]),
                stride=int(dim.attrib["BytesInc"]),
                origin=float(dim.attrib.get("Origin", "0") or 0),
                length=float(dim.attrib.get("Length", "0") or 0),
                unit=dim.attrib.get("Unit", ""),
            )
        )
    return tuple(out)


def _dtype(channels: list[ET.Element]) -> tuple[str | None, str | None]:
    if not channels:
        return None, "it has no channels described in its XML"
    kinds = set()
    for channel in channels:
        data_type = int(channel.attrib.get("DataType", "0"))
        bits = int(channel.attrib.get("Resolution", "8"))
        if data_type not in (0, 1) or not 0 < bits <= 64:
            return None, f"it has an unknown pixel type (DataType={data_type}, Resolution={bits})"
        itemsize = 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8
        kinds.add(("uint" if data_type == 0 else "float") + str(itemsize * 8))
    if len(kinds) > 1:
        return None, f"it has channels of different pixel types ({', '.join(sorted(kinds))})"
    kind = kinds.pop()
    if kind == "float8":
        return None, "it has 8-bit float pixels"
    return kind, None


def _axes_problem(axes: tuple[Axis, ...], offsets: tuple[int, ...]) -> str | None:
    codes = [a.code for a in axes]
    if len(set(codes)) != len(codes):
        return f"it has a repeated dimension ({codes})"
    for axis in axes:
        if axis.code not in "TZYXM" and axis.size > 1:
            what = DIM_WORDS.get(axis.code, f"an unknown dimension (code {axis.code!r})")
            return (
                f"it has {what} of {axis.size} steps, which has no place in T, C, Z, Y, X; "
                "tlcore does not read lambda or other spectral scans (read this image with "
                "liffile directly)"
            )
    if "X" not in codes:
        return "it has no X dimension"
    if len(offsets) > 1:
        stride = offsets[1] - offsets[0]
        if any(o != offsets[0] + i * stride for i, o in enumerate(offsets)):
            return f"it has channels at irregular byte offsets {offsets}"
    return None


def _tiles(element: ET.Element) -> tuple[Tile, ...]:
    info = element.find('./Data/Image/Attachment[@Name="TileScanInfo"]')
    if info is None:
        return ()
    return tuple(
        Tile(
            field_x=int(t.attrib.get("FieldX", "0")),
            field_y=int(t.attrib.get("FieldY", "0")),
            pos_x=float(t.attrib.get("PosX", "0")),
            pos_y=float(t.attrib.get("PosY", "0")),
            pos_z=float(t.attrib.get("PosZ", "0")),
        )
        for t in info.findall("./Tile")
    )


def _timestamps(element: ET.Element) -> tuple[int, ...] | None:
    """Per-frame acquisition times as FILETIME ticks (100 ns), in storage order."""
    found = element.find("./Data/Image/TimeStampList")
    if found is None:
        return None
    stamps = found.findall("./TimeStamp")
    try:
        if stamps:  # LAS AF / LAS X before 3.1: one element per frame
            return tuple(
                (int(s.attrib["HighInteger"]) << 32) + int(s.attrib["LowInteger"]) for s in stamps
            )
        if found.text and found.text.strip():  # LAS X 3.1 and later: hex ticks in the text
            return tuple(int(word, 16) for word in found.text.split())
    except (KeyError, ValueError):
        return None
    return None


def per_timepoint_seconds(meta: ImageMeta) -> tuple[float, ...] | None:
    """The acquisition time of every timepoint in seconds from the first one, or None.

    LIF records one time stamp per stored 2-D frame (every index of the axes outside the two
    innermost stored ones, channels included) in storage order. A timepoint's time is the
    earliest stamp among its frames.
    """
    stamps = meta.timestamps
    n_t = meta.size("T")
    if stamps is None or n_t < 2:
        return None
    dims = [(a.code, a.size, a.stride) for a in meta.axes if a.size > 1]
    if len(meta.channel_offsets) > 1:
        dims.append(("C", len(meta.channel_offsets), abs(meta.channel_stride)))
    dims.sort(key=lambda d: d[2], reverse=True)
    outer = dims[:-2]
    if "T" not in [d[0] for d in outer] or math.prod(d[1] for d in outer) != len(stamps):
        return None
    ticks = np.asarray(stamps, dtype=np.int64).reshape([d[1] for d in outer])
    t_axis = [d[0] for d in outer].index("T")
    first = np.moveaxis(ticks, t_axis, 0).reshape(n_t, -1).min(axis=1)
    seconds = (first - first[0]) / TICKS
    if np.any(np.diff(seconds) < 0):
        return None
    return tuple(float(s) for s in seconds)


def nominal_interval(meta: ImageMeta) -> float | None:
    """The T dimension's Length (the whole acquisition's duration) over its n - 1 steps."""
    axis = meta.axis("T")
    if axis is None or axis.size < 2:
        return None
    factor = TIME_TO_S.get(axis.unit, 1.0 if not axis.unit else None)
    if factor is None or not math.isfinite(axis.length) or axis.length <= 0:
        return None
    return axis.length * factor / (axis.size - 1)
