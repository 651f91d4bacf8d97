"""Open a TIFF read-only (local or fsspec) and describe its scenes in tlcore's terms.

Everything here reads metadata only (IFDs, OME-XML, ImageJ metadata), never pixel data. The
result, :class:`FileMeta`, is plain data cached per process and keyed by the file's identity
(size and mtime), so the hooks share one parse.

Two interpretations, chosen by ``mode``:

* ``"ome"``: the OME-XML decides the scenes (one per ``<Image>``), the axes (DimensionOrder),
  pixel sizes, channel names and times; SubIFD pyramids are levels. Files without usable OME-XML
  are refused.
* ``"tiff"``: a plain TIFF stack read through tifffile's series (ImageJ hyperstack, tifffile's
  "shaped" JSON, generic page stacks...), unless it carries usable OME-XML and no ``tiff_dims``
  option, in which case it is read exactly as in ``"ome"`` mode.

How a plain multi-page stack maps to TCZYX is documented in the README ("Which axis is which").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import tifffile

from tlcore import PixelSizes, Source, TimeAxis
from tlcore_tiff import ome as ome_xml
from tlcore_tiff.options import dims_override, fsspec_options
from tlcore_tiff.units import length_to_um, time_to_seconds

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: A page larger than this is split into row bands (several strips) in the dask array.
MAX_CHUNK_BYTES = 4 << 20
TARGET_BAND_BYTES = 1 << 20
UNLABELLED = "IQ"  # tifffile's letters for page stacks whose meaning the file does not record

Shape5 = tuple[int, int, int, int, int]


class NotOmeTiff(ValueError):
    """The file is a TIFF but has no OME-XML tlcore can use (the plain reader may read it)."""


@dataclass(frozen=True)
class Layout:
    """How one tifffile series maps to TCZYX.

    ``leading_shape`` are the series axes outside a page, outermost first, and ``targets``
    names the TCZYX axis each one becomes ("-" for a dropped size-1 axis). A page holds Y, X
    and ``samples`` samples per pixel, ``planar`` when stored as separate sample planes.
    """

    leading_shape: tuple[int, ...]
    targets: str
    samples: int
    planar: bool

    def page_index(self, t: int, c: int, z: int) -> int:
        """The series page that holds timepoint t, native channel c and plane z."""
        index = 0
        for n, target in zip(self.leading_shape, self.targets):
            i = t if target == "T" else c if target == "C" else z if target == "Z" else 0
            index = index * n + i
        return index


@dataclass(frozen=True)
class LevelMeta:
    shape: Shape5
    chunks: Shape5
    downsampling: tuple[float, float, float, float, float]


@dataclass(frozen=True)
class SceneMeta:
    """One scene (a tifffile series). ``problem`` says why it cannot be read, if so."""

    id: str
    name: str | None
    series: int
    dtype: str
    layout: Layout | None
    levels: tuple[LevelMeta, ...]
    time_axis: TimeAxis
    pixel_sizes: PixelSizes
    channel_names: tuple[str, ...]
    native_axes: str
    native_shape: tuple[int, ...]
    kind: str
    problem: str | None = None


@dataclass(frozen=True)
class FileMeta:
    uri: str
    ome: bool
    scenes: tuple[SceneMeta, ...]


# -- opening ---------------------------------------------------------------------------------
def _fs(source: Source) -> Any:
    import fsspec

    return fsspec.filesystem(source.protocol, **fsspec_options(source.storage_options))


def read_header(source: Source, length: int = 8) -> bytes:
    """The first bytes of the file (plugin options stripped from what fsspec sees)."""
    if source.is_local:
        with open(source.uri, "rb") as fh:
            return fh.read(length)
    return bytes(_fs(source).cat_file(source.uri, start=0, end=length))


class OpenTiff:
    """A TiffFile opened read-only on a local path or an fsspec file, closed as one."""

    def __init__(self, source: Source, ome: bool) -> None:
        flags: dict[str, Any] = {} if ome else {"is_ome": False}
        self.fs: Any = None
        self._remote: Any = None
        if source.is_local:
            self.tf = tifffile.TiffFile(source.uri, mode="r", **flags)
            return
        self.fs = _fs(source)
        self._remote = self.fs.open(source.uri, "rb")
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


def _stamp(source: Source) -> tuple[int, int]:
    if source.is_local:
        st = os.stat(source.uri)
        return (st.st_size, st.st_mtime_ns)
    info = _fs(source).info(source.uri)
    return (int(info.get("size") or 0), hash(str(info.get("ETag") or info.get("mtime") or "")))


def file_meta(source: Source, mode: str) -> FileMeta:
    """The scenes of ``source`` read as ``mode`` ("ome" or "tiff"), cached per process.

    Raises:
        NotOmeTiff: mode "ome" and the file has no usable OME-XML.
        OptionError: a malformed ``tiff_*`` storage option.
        tifffile.TiffFileError, OSError: not a readable TIFF.
    """
    return _file_meta_cached(source, mode, _stamp(source))


@functools.lru_cache(maxsize=64)
def _file_meta_cached(source: Source, mode: str, stamp: tuple[int, int]) -> FileMeta:
    with _damage_reports() as damage:
        try:
            meta = _parse(source, mode, stamp[0])
        except Exception as exc:
            if damage:
                raise _damaged(damage, stamp[0]) from exc
            raise
    if damage:
        # tifffile skips IFDs and tag values it cannot reach and carries on: with the OME-XML
        # or later pages gone, what is left would be read with the wrong shape.
        raise _damaged(damage, stamp[0])
    return meta


def _damaged(damage: list[str], file_size: int) -> tifffile.TiffFileError:
    return tifffile.TiffFileError(
        f"the file is truncated or damaged: tifffile found {damage[0]} (the file has "
        f"{file_size:,} bytes); copy or download it again"
    )


_DAMAGE = re.compile(r"invalid (?:page|value) offset \d+|corrupted tag list of page \d+")


@contextlib.contextmanager
def _damage_reports() -> Iterator[list[str]]:
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


def _parse(source: Source, mode: str, file_size: int) -> FileMeta:
    dims = dims_override(source.storage_options, source.uri)
    if mode == "ome" and dims is not None:
        raise NotOmeTiff(
            "the tiff_dims storage option asks for a plain TIFF reading, which the 'tiff' "
            "reader does"
        )
    if dims is None:
        with OpenTiff(source, ome=True) as opened:
            _walk_ifds(opened.tf)
            try:
                return _ome_meta(opened.tf, source.uri, file_size)
            except NotOmeTiff:
                if mode == "ome":
                    raise
            if not opened.tf.is_ome:
                return _plain_meta(opened.tf, source.uri, file_size, dims)
    # Read the plain structure, without tifffile's OME interpretation of it.
    with OpenTiff(source, ome=False) as opened:
        _walk_ifds(opened.tf)
        return _plain_meta(opened.tf, source.uri, file_size, dims)


def _walk_ifds(tf: tifffile.TiffFile) -> None:
    """Follow the whole IFD chain (a few bytes per page), so that a chain cut by truncation is
    noticed even where tifffile would read only the first page (ImageJ hyperstacks)."""
    len(tf.pages)


# -- OME -------------------------------------------------------------------------------------
def _ome_meta(tf: tifffile.TiffFile, uri: str, file_size: int) -> FileMeta:
    if not tf.is_ome or not tf.ome_metadata:
        raise NotOmeTiff("no OME-XML in the first page's ImageDescription")
    try:
        images = ome_xml.parse(tf.ome_metadata)
    except ValueError as exc:
        raise NotOmeTiff(str(exc)) from exc
    positions = [i for i, s in enumerate(tf.series) if s.kind == "ome"]
    series = [tf.series[i] for i in positions]
    if not images or not series:
        raise NotOmeTiff("tifffile found no OME image series (the OME-XML does not match the file)")
    matched = _match_images(images, series)
    ids = [img.id if img is not None else f"Image:{i}" for img, i in zip(matched, positions)]
    if len(set(ids)) != len(ids):
        ids = [f"Image:{i}" for i in range(len(series))]
    scenes = []
    for index, (image, position, scene_id) in enumerate(zip(matched, positions, ids)):
        scenes.append(_scene(tf, position, index, scene_id, uri, file_size, image, None))
    return FileMeta(uri, True, tuple(scenes))


def _match_images(
    images: Sequence[ome_xml.OmeImage], series: Sequence[Any]
) -> list[ome_xml.OmeImage | None]:
    """Pair tifffile's OME series with their ``<Image>`` elements (tifffile skips images
    without data, so the lists can differ in length)."""
    if len(images) == len(series):
        return list(images)
    out: list[ome_xml.OmeImage | None] = []
    j = 0
    for s in series:
        while j < len(images) and images[j].name != s.name:
            j += 1
        out.append(images[j] if j < len(images) else None)
        j += 1
    return out


# -- plain TIFF ------------------------------------------------------------------------------
def _plain_meta(tf: tifffile.TiffFile, uri: str, file_size: int, dims: str | None) -> FileMeta:
    if not tf.series:
        raise tifffile.TiffFileError(f"{uri}: tifffile found no image in the file")
    scenes = [
        _scene(tf, index, index, f"Image:{index}", uri, file_size, None, dims)
        for index in range(len(tf.series))
    ]
    return FileMeta(uri, False, tuple(scenes))


# -- one scene -------------------------------------------------------------------------------
class _Unsupported(Exception):
    pass


def _scene(
    tf: tifffile.TiffFile,
    position: int,
    index: int,
    scene_id: str,
    uri: str,
    file_size: int,
    image: ome_xml.OmeImage | None,
    dims: str | None,
) -> SceneMeta:
    series = tf.series[position]
    axes = series.get_axes(False)
    shape = tuple(int(n) for n in series.get_shape(False))
    base: dict[str, Any] = {
        "id": scene_id,
        "name": image.name if image is not None else (series.name or None),
        "series": position,
        "dtype": str(series.dtype),
        "native_axes": axes,
        "native_shape": shape,
        "kind": str(series.kind),
    }
    try:
        layout = _layout(series, axes, shape, dims, image)
        levels = _levels(series, layout)
        _check_data(series, file_size)
    except _Unsupported as exc:
        empty = TimeAxis(size=0)
        return SceneMeta(
            layout=None,
            levels=(),
            time_axis=empty,
            pixel_sizes=PixelSizes(),
            channel_names=(),
            problem=str(exc),
            **base,
        )
    t, c = levels[0].shape[:2]
    return SceneMeta(
        layout=layout,
        levels=tuple(levels),
        time_axis=_time_axis(tf, image, t),
        pixel_sizes=_pixel_sizes(tf, series, image),
        channel_names=_channel_names(tf, series, image, index, c, layout.samples),
        **base,
    )


def _layout(
    series: Any,
    axes: str,
    shape: tuple[int, ...],
    dims: str | None,
    image: ome_xml.OmeImage | None,
) -> Layout:
    keyframe = series.keyframe
    if keyframe.imagedepth > 1:
        raise _Unsupported(
            f"its pages are volumes (TIFF ImageDepth {keyframe.imagedepth}), which tlcore's "
            "TIFF reader does not read"
        )
    if series.is_multifile:
        raise _Unsupported(
            "it is a multi-file OME-TIFF (planes stored in other files), which tlcore's TIFF "
            "reader does not read yet; combine the files into one, or convert to OME-Zarr"
        )
    samples = int(keyframe.samplesperpixel)
    planar = samples > 1 and keyframe.planarconfig == 2
    if dims is not None:
        return _layout_from_dims(series, dims, samples, planar)
    page_axes = "SYX" if planar else "YXS"
    if not axes.endswith(page_axes) and not (samples == 1 and axes.endswith("YX")):
        raise _Unsupported(
            f"tifffile reports axes {axes!r} for shape {shape}, which do not end with one page "
            f"({page_axes!r}); set the storage option tiff_dims to name the axes"
        )
    n_page = len(page_axes) if axes.endswith(page_axes) else 2
    leading_axes, leading_shape = axes[:-n_page], shape[:-n_page]
    targets = []
    pending = []
    for i, (letter, n) in enumerate(zip(leading_axes, leading_shape)):
        if n == 1:
            targets.append("-")
        elif letter in "TCZ":
            targets.append(letter)
        elif letter in UNLABELLED:
            targets.append("?")
            pending.append(i)
        else:
            if image is not None and image.modulo:
                raise _Unsupported(
                    f"it uses an OME Modulo annotation ({image.modulo}): tifffile reads axes "
                    f"{axes!r} {shape}, and the extra axis {letter!r} of size {n} has no place "
                    "in T, C, Z, Y, X. OME Modulo files are not supported; export the plain "
                    "channels or time series instead"
                )
            raise _Unsupported(
                f"axis {letter!r} of size {n} (tifffile axes {axes!r}, shape {shape}) has no "
                "place in T, C, Z, Y, X; set the storage option tiff_dims to name the axes"
            )
    if len(pending) > 1:
        raise _Unsupported(
            f"it has {len(pending)} unlabelled page axes (tifffile axes {axes!r}, shape "
            f"{shape}); set the storage option tiff_dims to say which is which, for example "
            "{'tiff_dims': 'TZYX'}"
        )
    for i in pending:
        free = [d for d in "TZC" if d not in targets]
        targets[i] = free[0]
    used = [d for d in targets if d != "-"]
    if len(set(used)) != len(used):
        raise _Unsupported(
            f"tifffile axes {axes!r} (shape {shape}) name an axis twice; set the storage option "
            "tiff_dims to name the axes"
        )
    return Layout(tuple(leading_shape), "".join(targets), samples, planar)


def _layout_from_dims(series: Any, dims: str, samples: int, planar: bool) -> Layout:
    axes, shape = series.axes, tuple(int(n) for n in series.shape)
    page_axes = "YX" if samples == 1 else ("SYX" if planar else "YXS")
    hint = (
        f"the series has shape {shape} (tifffile axes {axes!r}): tiff_dims must have "
        f"{len(shape)} letters and end with {page_axes!r}"
    )
    if len(dims) != len(shape):
        raise _Unsupported(f"storage option tiff_dims={dims!r} does not fit: {hint}")
    given_page = dims[-len(page_axes) :].replace("C", "S") if samples > 1 else dims[-2:]
    if given_page != page_axes or "S" in dims[: -len(page_axes)]:
        raise _Unsupported(f"storage option tiff_dims={dims!r} does not fit: {hint}")
    n_page = len(page_axes)
    leading_shape = shape[:-n_page]
    targets = "".join(d if n > 1 else "-" for d, n in zip(dims[:-n_page], leading_shape))
    return Layout(leading_shape, targets, samples, planar)


def _levels(series: Any, layout: Layout) -> list[LevelMeta]:
    out: list[LevelMeta] = []
    base_y = base_x = 1
    for i, level in enumerate(series.levels):
        kf = level.keyframe
        y, x = int(kf.imagelength), int(kf.imagewidth)
        if i == 0:
            base_y, base_x = y, x
        lead = tuple(int(n) for n in level.get_shape(False))[: len(layout.leading_shape)]
        if i and (kf.imagedepth > 1 or lead != layout.leading_shape):
            break  # a level that does not share the base's planes is not a pyramid level
        sizes = {"T": 1, "C": 1, "Z": 1}
        for n, target in zip(layout.leading_shape, layout.targets):
            if target in sizes:
                sizes[target] = n
        shape: Shape5 = (sizes["T"], sizes["C"] * layout.samples, sizes["Z"], y, x)
        cy, cx = _yx_chunks(kf, y, x, layout.samples)
        chunks: Shape5 = (1, layout.samples, 1, cy, cx)
        down = (1.0, 1.0, 1.0, base_y / y, base_x / x)
        out.append(LevelMeta(shape, chunks, down))
    return out


def _yx_chunks(kf: Any, y: int, x: int, samples: int) -> tuple[int, int]:
    """One tile, or the whole page, or (for pages over MAX_CHUNK_BYTES) bands of whole strips:
    never more than one page, so a crop decodes at most the pages it touches."""
    if kf.is_tiled:
        return min(int(kf.tilelength), y), min(int(kf.tilewidth), x)
    row_bytes = x * samples * kf.dtype.itemsize
    if y * row_bytes <= MAX_CHUNK_BYTES:
        return y, x
    unit = 1 if kf.is_final else max(1, int(kf.rowsperstrip))
    rows = max(1, math.ceil(TARGET_BAND_BYTES / row_bytes / unit)) * unit
    return min(rows, y), x


def _check_data(series: Any, file_size: int) -> None:
    """Refuse a scene whose pixel data lies past the end of the file (a truncated copy)."""
    end = 0
    for level in series.levels:
        offset = level.dataoffset
        if offset is not None and level.keyframe.is_contiguous:
            end = max(end, int(offset) + int(level.nbytes))
            continue
        for k in range(len(level)):
            page = level._getitem(k)
            if page is None:
                continue
            for off, count in zip(page.dataoffsets, page.databytecounts):
                end = max(end, int(off) + int(count))
    if end > file_size:
        raise _Unsupported(
            f"the file is truncated: its pixel data runs to byte {end:,} but the file has "
            f"{file_size:,} bytes; copy or download it again"
        )
    if getattr(series, "is_truncated", False):
        raise _Unsupported("tifffile reports the series as truncated; copy the file again")


# -- time, pixel sizes, channels ---------------------------------------------------------------
def _time_axis(tf: tifffile.TiffFile, image: ome_xml.OmeImage | None, size: int) -> TimeAxis:
    if image is not None:
        stamps = image.timestamps if image.timestamps and len(image.timestamps) == size else None
        return TimeAxis(size=size, timestamps=stamps, interval=image.interval)
    if tf.is_imagej and tf.imagej_metadata:
        ij = tf.imagej_metadata
        interval = time_to_seconds(ij.get("finterval"), ij.get("tunit"), default="s")
        if interval is not None and interval > 0:
            return TimeAxis(size=size, interval=interval)
    return TimeAxis(size=size)


def _pixel_sizes(tf: tifffile.TiffFile, series: Any, image: ome_xml.OmeImage | None) -> PixelSizes:
    if image is not None:
        return PixelSizes(*image.pixel_sizes)
    kf = series.keyframe
    if tf.is_imagej and tf.imagej_metadata:
        ij = tf.imagej_metadata
        unit = ij.get("unit")
        if isinstance(unit, str):
            unit = unit.replace("\\u00B5", "µ")
        if not unit or str(unit).lower() in ("pixel", "pixels"):
            return PixelSizes()
        y, x = _resolution_um(kf, unit)
        return PixelSizes(length_to_um(ij.get("spacing"), unit), y, x)
    unit_code = int(getattr(kf, "resolutionunit", 1) or 1)
    # 2 (inch) is left out on purpose: it is mostly a 72-dpi default, not a measurement.
    unit_names = {3: "cm", 4: "mm", 5: "µm"}
    if unit_code not in unit_names:
        return PixelSizes()
    y, x = _resolution_um(kf, unit_names[unit_code])
    return PixelSizes(None, y, x)


def _resolution_um(kf: Any, unit: str) -> tuple[float | None, float | None]:
    """Y and X pixel size from the X/YResolution tags (pixels per ``unit``)."""
    try:
        xres, yres = kf.get_resolution()
    except Exception:  # malformed rational tags: unknown, not an error
        return None, None
    x = length_to_um(1.0 / xres, unit) if xres else None
    y = length_to_um(1.0 / yres, unit) if yres else None
    return y, x


def _channel_names(
    tf: tifffile.TiffFile,
    series: Any,
    image: ome_xml.OmeImage | None,
    scene: int,
    size_c: int,
    samples: int,
) -> tuple[str, ...]:
    letters = "RGBA" if samples in (3, 4) and series.keyframe.photometric == 2 else None
    native_c = size_c // samples
    bases: list[str | None] = [None] * native_c
    if image is not None and len(image.channel_names) == native_c:
        bases = list(image.channel_names)
    names = []
    for c in range(native_c):
        stem = bases[c] or f"Channel:{scene}:{c}"
        for s in range(samples):
            if samples == 1:
                names.append(stem)
            elif native_c == 1 and bases[c] is None and letters:
                names.append(letters[s])  # a plain RGB image: channels R, G, B
            else:
                names.append(f"{stem}:{letters[s] if letters else s}")
    return tuple(names)
