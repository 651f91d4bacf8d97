"""The model of one CZI file that every hook works from: its scenes, their planes, rectangles,
pyramid layers, channels, pixel sizes and time, built from the container
(:mod:`tlcore_czi.directory`) and the XML metadata. Pure Python: no libCZI.

Documents are cached per process by path, size and modification time, so the several hook calls
that one ``tlcore.open_lazy`` makes parse the file once.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tlcore import Source
from tlcore_czi.directory import Container, CziFormatError, SubBlock, read_container
from tlcore_czi.directory import read_subblock_xml as _read_subblock_xml

#: libCZI pixel types tlcore reads: id -> (name, numpy dtype, samples per pixel).
PIXEL_TYPES: dict[int, tuple[str, str, int]] = {
    0: ("Gray8", "uint8", 1),
    1: ("Gray16", "uint16", 1),
    2: ("Gray32Float", "float32", 1),
    3: ("Bgr24", "uint8", 3),
    4: ("Bgr48", "uint16", 3),
    8: ("Bgr96Float", "float32", 3),
}
_OTHER_PIXEL_TYPES = {
    9: "Bgra32",
    10: "Gray64ComplexFloat",
    11: "Bgr192ComplexFloat",
    12: "Gray32",
    13: "Gray64",
}
_ITEMSIZE = {"uint8": 1, "uint16": 2, "float32": 4}
#: Plane dimensions tlcore maps to its axes; the others must have a single value.
PLANE_DIMS = ("T", "C", "Z")
_DIM_NAMES = {"R": "rotation", "I": "illumination", "H": "phase", "V": "view", "B": "block"}
#: ``storage_options`` keys this reader understands (everything else goes to nobody: local only).
OPTION_TILES = "czi_tiles"
OPTIONS = (OPTION_TILES,)
RGB_NAMES = ("R", "G", "B")


class CziUnsupportedError(ValueError):
    """A valid CZI file that holds something tlcore cannot give as TCZYX."""


@dataclass(frozen=True)
class Tile:
    """One mosaic tile (M index) of a scene, in tiles mode."""

    m: int
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Scene:
    """One CZI scene as tlcore shows it (or one tile of it, in tiles mode).

    ``czi_index`` is the CZI S index (None for a file without scenes); ``rect`` the layer-0
    bounding rectangle ``(x, y, w, h)`` in CZI pixel coordinates; ``ranges`` the first index and
    count of T, C and Z; ``factors`` the pyramid minification factors, 1 first.
    """

    id: str
    name: str | None
    czi_index: int | None
    rect: tuple[int, int, int, int]
    ranges: dict[str, tuple[int, int]]
    pixel_type: int
    factors: tuple[int, ...]
    tile_size: tuple[int, int]
    tile: Tile | None
    blocks: tuple[SubBlock, ...]

    @property
    def dtype(self) -> str:
        return PIXEL_TYPES[self.pixel_type][1]

    @property
    def samples(self) -> int:
        return PIXEL_TYPES[self.pixel_type][2]

    @property
    def pixel_type_name(self) -> str:
        return PIXEL_TYPES[self.pixel_type][0]

    def shape(self, level: int = 0) -> tuple[int, int, int, int, int]:
        f = self.factors[level]
        _, _, w, h = self.rect
        return (
            self.ranges["T"][1],
            self.ranges["C"][1] * self.samples,
            self.ranges["Z"][1],
            max(1, h // f),
            max(1, w // f),
        )

    @property
    def one_uncompressed_block_per_plane(self) -> bool:
        """Every plane is one uncompressed subblock (no mosaic to compose): any rectangle of
        it is read from the file directly, at no more cost in bands than whole."""
        planes = {(b.dims.get("T", 0), b.dims.get("C", 0), b.dims.get("Z", 0)) for b in self.blocks}
        return len(planes) == len(self.blocks) and all(b.compression == 0 for b in self.blocks)

    def chunks(self, level: int = 0) -> tuple[int, int, int, int, int]:
        """One chunk per plane at most (the 3 samples of an RGB pixel are stored together, so
        an RGB plane is one chunk of 3 channels); Y/X like the stored tiles, 256-2048."""
        *_, z, y, x = self.shape(level)
        if self.tile is not None:
            return (1, self.samples, 1, y, x)
        th, tw = (min(2048, max(256, n)) for n in self.tile_size)
        cy, cx = min(y, th), min(x, tw)
        if level == 0 and self.one_uncompressed_block_per_plane:
            # Such subblocks are read by rows and columns (tlcore_czi.direct), so a
            # plane need not be one chunk: bands of a few rows across a few planes keep a
            # plain dask ``.compute()`` of a crop near the crop's own bytes.
            row = cx * self.samples * _ITEMSIZE[self.dtype]
            if cy * row > BAND_TARGET_BYTES:
                rows, planes = square_bands(row, cy, z)
                return (1, self.samples, planes, rows, cx)
        return (1, self.samples, 1, cy, cx)


#: Dask chunk size aimed at for uncompressed pages read by rows (CZI and TIFF alike).
BAND_TARGET_BYTES = 1 << 20


def square_bands(row_bytes: int, height: int, depth: int, unit: int = 1) -> tuple[int, int]:
    """Rows and planes of a chunk of about :data:`BAND_TARGET_BYTES` whose Y and Z extents are
    equal (rounded to ``unit`` rows), which minimises what a cubic crop reads past its edges."""
    side = max(1, math.isqrt(max(1, BAND_TARGET_BYTES // max(1, row_bytes))))
    rows = min(height, max(unit, -(-side // unit) * unit))
    planes = min(depth, max(1, BAND_TARGET_BYTES // max(1, rows * row_bytes)))
    return rows, planes


@dataclass(frozen=True)
class Document:
    """A parsed CZI file: scenes plus file-wide metadata."""

    path: str
    container: Container
    root: ET.Element | None
    scenes: tuple[Scene, ...]
    tiles_mode: bool

    def scene(self, index: int) -> Scene:
        return self.scenes[index]

    # -- metadata from the XML ---------------------------------------------------------------
    def _find(self, path: str) -> ET.Element | None:
        return None if self.root is None else self.root.find(path)

    def channel_names(self, scene: Scene) -> tuple[str, ...]:
        start, count = scene.ranges["C"]
        index = scene.czi_index or 0
        names: list[str] = []
        channels = self._find("./Metadata/Information/Image/Dimensions/Channels")
        found = [] if channels is None else channels.findall("Channel")
        for c in range(start, start + count):
            name = found[c].get("Name") if c < len(found) else None
            names.append(name or f"Channel:{index}:{c - start}")
        if len(set(names)) != len(names):
            names = [f"Channel:{index}:{c}" for c in range(count)]
        if scene.samples == 3:
            if count == 1:
                return RGB_NAMES
            return tuple(f"{n}:{s}" for n in names for s in RGB_NAMES)
        return tuple(names)

    def pixel_sizes_um(self, level_factor: int) -> tuple[float | None, float | None, float | None]:
        """Z, Y, X in micrometres from ``Scaling/Items/Distance`` (stored in metres)."""
        out: list[float | None] = []
        for dim in "ZYX":
            value = None
            if self.root is not None:
                for item in self.root.findall("./Metadata/Scaling/Items/Distance"):
                    if item.get("Id") == dim:
                        value = _float(item.findtext("Value"))
            if value is not None and math.isfinite(value) and value != 0:
                # metres -> micrometres, rounded to 12 digits so 1e-7 m gives 0.1, not 0.0999...
                value = abs(value) * 1e6 * (level_factor if dim != "Z" else 1)
                out.append(float(f"{value:.12g}"))
            else:
                out.append(None)
        return (out[0], out[1], out[2])

    def nominal_interval(self) -> float | None:
        """The planned interval of the time series, in seconds (CZI stores SI units; the
        ``DefaultUnitFormat`` beside the value is only how ZEN displays it)."""
        paths = (
            "./Metadata/Experiment/ExperimentBlocks/AcquisitionBlock/SubDimensionSetups/"
            "TimeSeriesSetup/Interval/TimeSpan/Value",
            "./Metadata/Information/Image/Dimensions/T/Positions/Interval/Increment",
        )
        for path in paths:
            el = self._find(path)
            value = _float(el.text if el is not None else None)
            if value is not None and math.isfinite(value) and value > 0:
                return value
        return None

    def recorded_offsets(self, count: int) -> tuple[float, ...] | None:
        """Per-timepoint offsets in seconds listed in the document (``T/Positions/List``)."""
        el = self._find("./Metadata/Information/Image/Dimensions/T/Positions/List/Offsets")
        if el is None or not el.text:
            return None
        try:
            values = tuple(float(v) for v in el.text.split())
        except ValueError:
            return None
        return values if len(values) == count else None

    def acquisition_times(self, scene: Scene) -> tuple[float, ...] | None:
        """Seconds from the first timepoint's start to each timepoint's start, from the
        ``AcquisitionTime`` of the first plane (lowest C, Z and tile) of every timepoint; None
        when any timepoint lacks one. Reads one subblock's XML per timepoint, no pixels."""
        start, count = scene.ranges["T"]
        first: dict[int, SubBlock] = {}
        for block in scene.blocks:
            t = block.dims.get("T", 0)
            key = tuple(sorted((k, v) for k, v in block.dims.items() if k != "T"))
            best = first.get(t)
            if best is None or key < tuple(
                sorted((k, v) for k, v in best.dims.items() if k != "T")
            ):
                first[t] = block
        if sorted(first) != list(range(start, start + count)):
            return None
        stamps: list[datetime] = []
        with open(self.path, "rb") as fh:

            def read_at(pos: int, n: int) -> bytes:
                fh.seek(pos)
                return fh.read(n)

            for t in range(start, start + count):
                text = _read_subblock_xml(read_at, first[t])
                when = _parse_time(text)
                if when is None:
                    return None
                stamps.append(when)
        return tuple((s - stamps[0]).total_seconds() for s in stamps)


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


_TIME = re.compile(r"<AcquisitionTime>\s*([^<\s]+)\s*</AcquisitionTime>")
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$")


def _parse_time(xml: str) -> datetime | None:
    """Parse ``AcquisitionTime`` (ISO 8601, up to 7 fractional digits as ZEN writes)."""
    match = _TIME.search(xml)
    if match is None:
        return None
    iso = _ISO.match(match.group(1))
    if iso is None:
        return None
    base, frac, tz = iso.groups()
    # No zone, or Z: UTC (only differences matter, all stamps of a file share the zone).
    zone = tz if tz and tz != "Z" else "+00:00"
    when = datetime.fromisoformat(base + zone).astimezone(UTC)
    if frac:
        when += timedelta(microseconds=round(float("0." + frac) * 1e6))
    return when


# -- building the model ------------------------------------------------------------------------


def tiles_option(options: Mapping[str, Any]) -> bool:
    unknown = [k for k in options if k.startswith("czi_") and k not in OPTIONS]
    if unknown:
        raise ValueError(
            f"unknown CZI option(s) {unknown} in storage_options; the CZI reader knows {OPTIONS}"
        )
    value = options.get(OPTION_TILES, False)
    if isinstance(value, str):
        value = value.strip().lower() in ("1", "true", "yes", "tiles")
    return bool(value)


def _scene_names(root: ET.Element | None, indices: list[int | None]) -> list[str]:
    """Scene ids: bioio-czi's names (``Name`` or ``Name-ShapeName``) where present and unique,
    else OME-style ``Image:<i>``."""
    names: list[str | None] = []
    for index in indices:
        name = None
        if root is not None and index is not None:
            for el in root.findall("./Metadata/Information/Image/Dimensions/S/Scenes/Scene"):
                if el.get("Index") == str(index):
                    name = el.get("Name")
                    shape = el.find("Shape")
                    shape_name = shape.get("Name") if shape is not None else None
                    if name and shape_name:
                        name = f"{name}-{shape_name}"
                    break
        names.append(name or None)
    ids = [
        n if n and names.count(n) == 1 and not n.startswith("Image:") else f"Image:{i}"
        for i, n in enumerate(names)
    ]
    if len(set(ids)) != len(ids):
        ids = [f"Image:{i}" for i in range(len(ids))]
    return ids


def _ranges(blocks: list[SubBlock]) -> dict[str, tuple[int, int]]:
    ranges: dict[str, tuple[int, int]] = {}
    for dim in PLANE_DIMS:
        values = {b.dims[dim] for b in blocks if dim in b.dims}
        if not values:
            ranges[dim] = (0, 1)
            continue
        lo, hi = min(values), max(values)
        ranges[dim] = (lo, hi - lo + 1)
    return ranges


def _check_extra_dims(blocks: list[SubBlock], where: str) -> None:
    for dim, label in _DIM_NAMES.items():
        values = {b.dims[dim] for b in blocks if dim in b.dims}
        if len(values) > 1:
            raise CziUnsupportedError(
                f"{where} has {len(values)} values along the CZI {dim} ({label}) dimension; "
                "tlcore reads T, C, Z, Y, X only (split the file per view/phase in ZEN)"
            )


def _pixel_type(blocks: list[SubBlock], where: str) -> int:
    types = {b.pixel_type for b in blocks}
    if len(types) != 1:
        names = sorted(PIXEL_TYPES.get(t, (str(t),))[0] for t in types)
        raise CziUnsupportedError(
            f"{where} mixes pixel types {names} across channels; tlcore needs one dtype per scene"
        )
    (ptype,) = types
    if ptype not in PIXEL_TYPES:
        name = _OTHER_PIXEL_TYPES.get(ptype, f"type {ptype}")
        raise CziUnsupportedError(
            f"{where} stores {name} pixels, which the CZI reader does not support "
            f"(supported: {', '.join(v[0] for v in PIXEL_TYPES.values())})"
        )
    return ptype


def _rect(blocks: list[SubBlock]) -> tuple[int, int, int, int]:
    x0 = min(b.x for b in blocks)
    y0 = min(b.y for b in blocks)
    x1 = max(b.x + b.w for b in blocks)
    y1 = max(b.y + b.h for b in blocks)
    return (x0, y0, x1 - x0, y1 - y0)


def build(path: str, container: Container, tiles_mode: bool) -> Document:
    xml = container.metadata_xml.rstrip("\x00").strip()
    root: ET.Element | None = None
    if xml:
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise CziFormatError(f"the XML metadata is not well-formed ({exc})") from exc
    all_blocks = list(container.subblocks)
    if not all_blocks:
        raise CziFormatError("the file holds no subblocks (no image data)")
    by_scene: dict[int | None, list[SubBlock]] = {}
    for block in all_blocks:
        by_scene.setdefault(block.dims.get("S"), []).append(block)
    if None in by_scene and len(by_scene) > 1:
        # Subblocks without S beside scene subblocks: libCZI counts them in scene 0's filter.
        by_scene.setdefault(min(k for k in by_scene if k is not None), []).extend(
            by_scene.pop(None)
        )
    indices = sorted(by_scene, key=lambda k: -1 if k is None else k)
    ids = _scene_names(root, indices)
    scenes: list[Scene] = []
    for sid, index in zip(ids, indices):
        where = f"{path} scene {sid!r}"
        blocks = by_scene[index]
        layer0 = [b for b in blocks if b.is_layer0]
        if not layer0:
            raise CziFormatError(f"{where} has pyramid subblocks but no full-resolution ones")
        _check_extra_dims(layer0, where)
        ptype = _pixel_type(layer0, where)
        ranges = _ranges(layer0)
        factors = tuple(sorted({1} | {b.zoom_factor for b in blocks}))
        tile_size = (
            int(statistics.median(b.h for b in layer0)),
            int(statistics.median(b.w for b in layer0)),
        )
        common: dict[str, Any] = dict(
            name=sid if not sid.startswith("Image:") else None,
            czi_index=index,
            ranges=ranges,
            pixel_type=ptype,
            blocks=tuple(layer0),
        )
        if not tiles_mode:
            scenes.append(
                Scene(
                    id=sid,
                    rect=_rect(layer0),
                    factors=factors,
                    tile_size=tile_size,
                    tile=None,
                    **common,
                )
            )
            continue
        tiles: dict[int, list[SubBlock]] = {}
        for b in layer0:
            tiles.setdefault(b.dims.get("M", 0), []).append(b)
        for m in sorted(tiles):
            first = tiles[m][0]
            sizes = {(b.w, b.h) for b in tiles[m]}
            if len(sizes) != 1:
                raise CziUnsupportedError(
                    f"{where} tile M={m} changes size across planes {sorted(sizes)}; read it "
                    "stitched (without the czi_tiles option)"
                )
            tile = Tile(m, first.x, first.y, first.w, first.h)
            tile_common = dict(common, blocks=tuple(tiles[m]))
            scenes.append(
                Scene(
                    id=f"{sid}:M{m}",
                    rect=(tile.x, tile.y, tile.w, tile.h),
                    factors=(1,),
                    tile_size=(tile.h, tile.w),
                    tile=tile,
                    **tile_common,
                )
            )
    return Document(path, container, root, tuple(scenes), tiles_mode)


_cache: dict[tuple[Any, ...], Document] = {}
_cache_lock = threading.Lock()
_CACHE_SIZE = 16


def load(source: Source) -> Document:
    """The parsed document of a local CZI file (cached by path, size, mtime and options).

    Raises:
        CziFormatError: not a CZI, or truncated / damaged; the message names the file.
        CziUnsupportedError: a CZI whose content tlcore cannot map to TCZYX.
    """
    if not source.is_local:
        raise CziUnsupportedError(
            f"{source.uri}: the CZI reader reads local files only (libCZI cannot read fsspec "
            "URLs); copy the file locally or mount the bucket"
        )
    tiles_mode = tiles_option(source.storage_options)
    path = source.uri
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, tiles_mode)
    with _cache_lock:
        doc = _cache.get(key)
    if doc is not None:
        return doc
    with open(path, "rb") as fh:

        def read_at(pos: int, n: int) -> bytes:
            fh.seek(pos)
            return fh.read(n)

        try:
            container = read_container(read_at, st.st_size)
        except CziFormatError as exc:
            raise CziFormatError(f"{path}: {exc}") from None
    doc = build(path, container, tiles_mode)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = doc
    return doc
