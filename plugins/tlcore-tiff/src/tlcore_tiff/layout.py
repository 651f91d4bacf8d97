"""How a tifffile series maps to TCZYX, its levels and its dask chunks (metadata only).

The rule for a plain stack's unlabelled pages is in the README ("Which axis is which").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tlcore_tiff import ome as ome_xml

MAX_CHUNK_BYTES = 4 << 20
TARGET_BAND_BYTES = 1 << 20
UNLABELLED = "IQ"  # tifffile's letters for page stacks whose meaning the file does not record

Shape5 = tuple[int, int, int, int, int]


class Unsupported(Exception):
    """A scene tlcore cannot map to TCZYX or read; the message says why and what to do."""


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


def build_layout(
    series: Any,
    axes: str,
    shape: tuple[int, ...],
    dims: str | None,
    image: ome_xml.OmeImage | None,
) -> Layout:
    keyframe = series.keyframe
    if keyframe.imagedepth > 1:
        raise Unsupported(
            f"its pages are volumes (TIFF ImageDepth {keyframe.imagedepth}), which tlcore's "
            "TIFF reader does not read"
        )
    if series.is_multifile:
        raise Unsupported(
            "it is a multi-file OME-TIFF (planes stored in other files), which tlcore's TIFF "
            "reader does not read yet; combine the files into one, or convert to OME-Zarr"
        )
    samples = int(keyframe.samplesperpixel)
    planar = samples > 1 and keyframe.planarconfig == 2
    if dims is not None:
        return layout_from_dims(series, dims, samples, planar)
    page_axes = "SYX" if planar else "YXS"
    if not axes.endswith(page_axes) and not (samples == 1 and axes.endswith("YX")):
        raise Unsupported(
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
                raise Unsupported(
                    f"it uses an OME Modulo annotation ({image.modulo}): tifffile reads axes "
                    f"{axes!r} {shape}, and the extra axis {letter!r} of size {n} has no place "
                    "in T, C, Z, Y, X. OME Modulo files are not supported; export the plain "
                    "channels or time series instead"
                )
            raise Unsupported(
                f"axis {letter!r} of size {n} (tifffile axes {axes!r}, shape {shape}) has no "
                "place in T, C, Z, Y, X; set the storage option tiff_dims to name the axes"
            )
    if len(pending) > 1:
        raise Unsupported(
            f"it has {len(pending)} unlabelled page axes (tifffile axes {axes!r}, shape "
            f"{shape}); set the storage option tiff_dims to say which is which, for example "
            "{'tiff_dims': 'TZYX'}"
        )
    for i in pending:
        free = [d for d in "TZC" if d not in targets]
        targets[i] = free[0]
    used = [d for d in targets if d != "-"]
    if len(set(used)) != len(used):
        raise Unsupported(
            f"tifffile axes {axes!r} (shape {shape}) name an axis twice; set the storage option "
            "tiff_dims to name the axes"
        )
    return Layout(tuple(leading_shape), "".join(targets), samples, planar)


def layout_from_dims(series: Any, dims: str, samples: int, planar: bool) -> Layout:
    axes, shape = series.axes, tuple(int(n) for n in series.shape)
    page_axes = "YX" if samples == 1 else ("SYX" if planar else "YXS")
    hint = (
        f"the series has shape {shape} (tifffile axes {axes!r}): tiff_dims must have "
        f"{len(shape)} letters and end with {page_axes!r}"
    )
    if len(dims) != len(shape):
        raise Unsupported(f"storage option tiff_dims={dims!r} does not fit: {hint}")
    given_page = dims[-len(page_axes) :].replace("C", "S") if samples > 1 else dims[-2:]
    if given_page != page_axes or "S" in dims[: -len(page_axes)]:
        raise Unsupported(f"storage option tiff_dims={dims!r} does not fit: {hint}")
    n_page = len(page_axes)
    leading_shape = shape[:-n_page]
    targets = "".join(d if n > 1 else "-" for d, n in zip(dims[:-n_page], leading_shape))
    return Layout(leading_shape, targets, samples, planar)


def build_levels(series: Any, layout: Layout) -> list[LevelMeta]:
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
        cy, cx, cz = band_chunks(kf, y, x, layout.samples, sizes["Z"])
        chunks: Shape5 = (1, layout.samples, cz, cy, cx)
        down = (1.0, 1.0, 1.0, base_y / y, base_x / x)
        out.append(LevelMeta(shape, chunks, down))
    return out


def band_chunks(kf: Any, y: int, x: int, samples: int, z: int) -> tuple[int, int, int]:
    """Rows, columns and planes of one dask chunk: one tile of one page, or the whole page, or
    (for uncompressed pages over TARGET_BAND_BYTES, compressed ones over MAX_CHUNK_BYTES) bands
    of whole strips across a few planes.

    The reader reads a region's rows from every page it touches (a range read for uncompressed
    pages, the overlapping strips otherwise), so a band of r rows over r planes costs what it
    holds. Equal Y and Z extents of about TARGET_BAND_BYTES minimise what a plain dask
    ``.compute()`` of a cubic crop reads past the crop's edges: a 64^3 crop of 2048-wide
    uint16 pages touches 16-row, 16-plane bands (about 1.5x its rows and planes) instead of
    256-row bands of single planes (5x)."""
    if kf.is_tiled:
        return min(int(kf.tilelength), y), min(int(kf.tilewidth), x), 1
    row_bytes = x * samples * kf.dtype.itemsize
    # Uncompressed contiguous pages are read by rows at no extra cost, so they are banded from
    # TARGET_BAND_BYTES on; compressed strips only from MAX_CHUNK_BYTES (whole strips decode).
    whole_page_up_to = TARGET_BAND_BYTES if kf.is_final else MAX_CHUNK_BYTES
    if y * row_bytes <= whole_page_up_to:
        return y, x, 1
    unit = 1 if kf.is_final else max(1, int(kf.rowsperstrip))
    side = max(1, math.isqrt(max(1, TARGET_BAND_BYTES // row_bytes)))
    rows = min(y, max(unit, -(-side // unit) * unit))
    planes = min(max(1, z), max(1, TARGET_BAND_BYTES // (rows * row_bytes)))
    return rows, x, planes


def check_data(series: Any, file_size: int) -> None:
    """Refuse a scene whose pixel data lies past the end of the file (a truncated copy)."""
    end = 0
    for level in series.levels:
        offset = level.dataoffset
        if offset is not None and level.keyframe.is_contiguous:
            end = max(end, int(offset) + int(level.nbytes))
            continue
        for k in range(len(level)):
            page = level[k]
            if page is None:
                continue
            for off, count in zip(page.dataoffsets, page.databytecounts):
                end = max(end, int(off) + int(count))
    if end > file_size:
        raise Unsupported(
            f"the file is truncated: its pixel data runs to byte {end:,} but the file has "
            f"{file_size:,} bytes; copy or download it again"
        )
    if getattr(series, "is_truncated", False):
        raise Unsupported("tifffile reports the series as truncated; copy the file again")
