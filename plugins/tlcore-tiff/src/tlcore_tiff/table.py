"""Where each page of a TIFF series level keeps its pixels, and how to decode them, as plain data.

A :class:`PageTable` is read once from the IFDs, with the file's metadata, through tifffile's
public page attributes (``dataoffsets``, ``databytecounts``, ``compression``, ``predictor``...).
A reader carries it (pickled or forked into DataLoader workers), so a worker reads a crop's
tiles or strips by byte range without parsing a single IFD.

Segments are decoded with imagecodecs' public codecs, chosen by the TIFF compression tag, then
unpacked by sample format, bits per sample and byte order, un-predicted (horizontal
differencing, floating point) and placed by the tile or strip geometry. A level that uses
anything else (packed bits, chroma subsampling, volumetric tiles, a codec imagecodecs lacks, pages
that differ from their keyframe...) has :attr:`PageTable.codec` ``None`` and a
:attr:`PageTable.unsupported` reason: its reader then decodes with tifffile's own
``TiffPage.decode`` on an opened ``TiffFile`` (exact, only slower to open).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

#: TIFF compression tag -> name of the imagecodecs decoder. "Byte" codecs return bytes that are
#: unpacked like uncompressed data (so predictors and fill order apply); "image" codecs return
#: the decoded image (dtype and shape included).
BYTE_CODECS = {
    5: "lzw_decode",
    8: "deflate",  # zlib/deflate: imagecodecs' deflate (libdeflate) where built, else zlib
    32946: "deflate",
    50013: "deflate",
    32773: "packbits_decode",
    34925: "lzma_decode",
    50000: "zstd_decode",
}
IMAGE_CODECS = {
    7: "jpeg_decode",
    34933: "png_decode",
    50001: "webp_decode",
    50002: "jpegxl_decode",
    22610: "jpegxr_decode",
    34934: "jpegxr_decode",
    33003: "jpeg2k_decode",
    33004: "jpeg2k_decode",
    33005: "jpeg2k_decode",
    34712: "jpeg2k_decode",
}
#: TIFF predictor tag -> imagecodecs decoder, applied along the width axis.
PREDICTORS = {2: "delta_decode", 3: "floatpred_decode"}


@dataclass(frozen=True)
class Codec:
    """How the segments of one level are decoded (plain values: it pickles).

    ``dtype`` is the sample type as stored (file byte order); ``jpeg`` holds the JPEG colour
    spaces (input, output) for ``imagecodecs.jpeg_decode``.
    """

    compression: int
    predictor: int
    fillorder: int
    dtype: str
    hasalpha: bool = False
    jpeg: tuple[int | None, int | None] = (None, None)


def _decoder(name: str) -> Callable[..., Any]:
    import imagecodecs

    if name == "deflate":
        deflate = getattr(imagecodecs, "DEFLATE", None)
        name = "deflate_decode" if deflate is not None and deflate.available else "zlib_decode"
    found: Callable[..., Any] = getattr(imagecodecs, name)
    return found


def _available(name: str) -> bool:
    import imagecodecs

    if name == "deflate":
        return True  # zlib is always built
    codec = getattr(imagecodecs, name.removesuffix("_decode").upper(), None)
    if name == "jpeg_decode":
        codec = getattr(imagecodecs, "JPEG8", None)
    return codec is not None and bool(codec.available) and hasattr(imagecodecs, name)


def _signature(page: Any) -> tuple[Any, ...]:
    """What must match between a page and its keyframe for the keyframe's codec to apply."""
    return (
        int(page.compression),
        int(page.predictor),
        int(page.fillorder),
        page.bitspersample,
        page.sampleformat,
        int(page.planarconfig),
        int(page.samplesperpixel),
        int(page.imagewidth),
        int(page.imagelength),
        int(page.tilewidth),
        int(page.tilelength),
        int(page.rowsperstrip),
    )


def _jpeg_colorspace(kf: Any) -> tuple[int | None, int | None] | str:
    """JPEG (input, output) colour spaces, as tifffile chooses them, or why not supported."""
    extra = tuple(getattr(kf, "extrasamples", ()) or ())
    photometric = int(kf.photometric)
    if getattr(kf, "jpegheader", None) is not None:
        return "JPEG segments without their own header (NDPI)"
    if extra or int(kf.planarconfig) != 1:
        return "JPEG with extra samples or separate planes"
    if photometric in (0, 1):  # greyscale
        return (None, None)
    if photometric == 6:  # YCbCr -> RGB
        return (None, 2)
    if photometric == 2:  # RGB; without a JFIF marker the data is RGB, not YCbCr (Aperio)
        return (None if kf.is_jfif else 2, 2)
    return f"JPEG with photometric {photometric}"


def level_codec(kf: Any, byteorder: str) -> Codec | str:
    """The :class:`Codec` of a level's keyframe, or why the table path cannot decode it."""
    compression, predictor = int(kf.compression), int(kf.predictor)
    dtype = kf.dtype
    if dtype is None or dtype.kind not in "uif" or dtype.itemsize * 8 != kf.bitspersample:
        return f"{kf.bitspersample}-bit samples of format {kf.sampleformat}"
    if int(kf.imagedepth) != 1 or int(getattr(kf, "tiledepth", 1)) != 1:
        return "volumetric tiles"
    if kf.is_subsampled and compression != 7:
        return "chroma subsampling"
    file_dtype = dtype.newbyteorder(byteorder).str
    if compression in IMAGE_CODECS:
        if not _available(IMAGE_CODECS[compression]):
            return f"compression {compression} (imagecodecs lacks its codec)"
        jpeg: tuple[int | None, int | None] = (None, None)
        if compression == 7:
            found = _jpeg_colorspace(kf)
            if isinstance(found, str):
                return found
            jpeg = found
        # predictors and fill order do not apply to image codecs (tifffile ignores them too)
        hasalpha = compression == 50001 and int(kf.samplesperpixel) == 4
        return Codec(compression, 1, 1, file_dtype, hasalpha, jpeg)
    if compression != 1 and (
        compression not in BYTE_CODECS or not _available(BYTE_CODECS[compression])
    ):
        return f"compression {compression}"
    if predictor != 1 and (predictor not in PREDICTORS or not _available(PREDICTORS[predictor])):
        return f"predictor {predictor}"
    if predictor == 3 and dtype.kind != "f":
        return "floating point predictor on integer samples"
    if int(kf.fillorder) not in (1, 2):
        return f"fill order {kf.fillorder}"
    return Codec(compression, predictor, int(kf.fillorder), file_dtype)


class PageTable:
    """Where each page of one series level keeps its pixels and how to decode them.

    Built from a tifffile series level and the file's byte order (``TiffFile.byteorder``),
    through tifffile's public page attributes only. Uncompressed contiguous
    series (``contiguous_offset`` set: ImageJ hyperstacks, tifffile's own contiguous writes)
    need no per-page offsets: a page's bytes sit at a computed offset.
    """

    def __init__(self, level: Any, byteorder: str) -> None:
        kf = level.keyframe
        found = level_codec(kf, byteorder)
        self.codec: Codec | None = found if isinstance(found, Codec) else None
        self.unsupported: str | None = found if isinstance(found, str) else None
        # no dtype: tifffile cannot type the samples; the codec is None and its decoder raises
        self.file_dtype = np.dtype(kf.dtype or "u1").newbyteorder(byteorder)  # type: ignore[arg-type]
        self.height, self.width = int(kf.imagelength), int(kf.imagewidth)
        self.samples = int(kf.samplesperpixel)
        self.planar = self.samples > 1 and int(kf.planarconfig) == 2
        self.final = bool(kf.is_final)
        self.tiled = bool(kf.is_tiled)
        self.tile = (int(kf.tilelength), int(kf.tilewidth)) if self.tiled else (0, 0)
        self.rowsperstrip = max(1, min(int(kf.rowsperstrip), self.height))
        self.nodata = kf.nodata
        self.page_bytes = int(kf.nbytes)
        offset = level.dataoffset
        self.contiguous_offset = int(offset) if offset is not None and self.final else None
        n = len(level) if self.contiguous_offset is None else 0
        segments = len(kf.dataoffsets)
        self.offsets = np.zeros((n, segments), np.int64)
        self.counts = np.zeros((n, segments), np.int64)
        self.present = np.zeros(n, bool)
        self.contiguous = np.zeros(n, bool)
        #: a page's JPEG tables (where it has any)
        self.jpegtables: dict[int, bytes] = {}
        base = kf.jpegtables
        #: NDPI's shared JPEG header (only tifffile's decoder, the fallback, uses it)
        self.jpegheader: bytes | None = getattr(kf, "jpegheader", None)
        signature = _signature(kf)
        for i in range(n):
            page = level[i]
            if page is None:  # a plane the OME-XML lists but the file does not hold
                continue
            k = min(len(page.dataoffsets), segments)
            self.offsets[i, :k] = page.dataoffsets[:k]
            self.counts[i, :k] = page.databytecounts[:k]
            self.present[i] = True
            self.contiguous[i] = bool(page.is_contiguous)
            if isinstance(page, tifffile.TiffFrame):  # a frame has its keyframe's structure
                tables = base
            else:
                tables = page.jpegtables
                if _signature(page) != signature:
                    self.codec, self.unsupported = None, f"page {i} differs from the first page"
            if tables is not None:
                self.jpegtables[i] = tables

    # -- geometry ------------------------------------------------------------------------------
    def segments(self, y0: int, y1: int, x0: int, x1: int) -> list[int]:
        """Indices of the strips or tiles that overlap rows y0:y1 and columns x0:x1."""
        separate = self.samples if self.planar else 1
        if self.tiled:
            th, tw = self.tile
            across = -(-self.width // tw)
            down = -(-self.height // th)
            return [
                (s * down + ty) * across + tx
                for s in range(separate)
                for ty in range(y0 // th, (y1 - 1) // th + 1)
                for tx in range(x0 // tw, (x1 - 1) // tw + 1)
            ]
        rps = self.rowsperstrip
        strips = -(-self.height // rps)
        return [
            s * strips + sy for s in range(separate) for sy in range(y0 // rps, (y1 - 1) // rps + 1)
        ]

    def position(self, index: int) -> tuple[int, int, int, int, int]:
        """Segment ``index`` as (separate sample, first row, first column, rows, columns) of
        the image it covers: edge tiles cover less than a tile, the last strip fewer rows."""
        if self.tiled:
            th, tw = self.tile
            across = -(-self.width // tw)
            down = -(-self.height // th)
            s, rest = divmod(index, across * down)
            y, x = rest // across * th, rest % across * tw
            return s, y, x, min(th, self.height - y), min(tw, self.width - x)
        rps = self.rowsperstrip
        strips = -(-self.height // rps)
        s, sy = divmod(index, strips)
        y = sy * rps
        return s, y, 0, min(rps, self.height - y), self.width

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, data: bytes, index: int, page: int) -> np.ndarray:
        """Decode segment ``index`` of page ``page`` to (rows, columns, contiguous samples) of
        the image it covers (edge padding cut off), in native byte order.

        Raises:
            ValueError: the decoded segment does not have the size its geometry requires.
        """
        codec = self.codec
        assert codec is not None, "decode needs a supported codec"
        contig = 1 if self.planar else self.samples
        _, _, _, rows, cols = self.position(index)
        # what the segment holds as stored: whole tiles, strips of their rows
        full = self.tile if self.tiled else (rows, self.width)
        if codec.compression in IMAGE_CODECS:
            array = self._image(codec, data, page)
        else:
            array = self._bytes(codec, data, full[0] * full[1] * contig)
        return _shape(array, full, rows, cols, contig, self.tiled)

    def _image(self, codec: Codec, data: bytes, page: int) -> np.ndarray:
        decode = _decoder(IMAGE_CODECS[codec.compression])
        if codec.compression == 7:
            colorspace, outcolorspace = codec.jpeg
            found: np.ndarray = decode(
                data,
                bitspersample=self.file_dtype.itemsize * 8,
                tables=self.jpegtables.get(page),
                colorspace=colorspace,
                outcolorspace=outcolorspace,
            )
            return found
        if codec.hasalpha:  # WebP segments may lack an all-opaque alpha channel
            found = decode(data, hasalpha=True)
            return found
        found = decode(data)
        return found

    def _bytes(self, codec: Codec, data: bytes, size: int) -> np.ndarray:
        dtype = np.dtype(codec.dtype)
        if codec.fillorder == 2:
            data = _decoder("bitorder_decode")(data)
        if codec.compression != 1:
            data = _decoder(BYTE_CODECS[codec.compression])(data, out=size * dtype.itemsize)
        if codec.predictor == 3:
            # the floating point predictor works on the bytes as stored
            dtype = np.dtype(dtype.char)
        usable = len(data) // dtype.itemsize * dtype.itemsize  # LZW strips may lack their EOI
        array = np.frombuffer(data, dtype, count=usable // dtype.itemsize)
        if array.size > size:  # codecs may return more than the segment holds
            array = array[:size]
        # native byte order; no copy where it already is (the caller copies into the crop)
        array = array.astype(dtype.newbyteorder("="), copy=False)
        if codec.predictor != 1:
            if array.size != size:
                raise ValueError(f"segment of {array.size} samples, expected {size}")
            contig = 1 if self.planar else self.samples
            width = self.tile[1] if self.tiled else self.width
            shaped = array.reshape(-1, width, contig)
            # into a new array: the decoded bytes may be read-only
            found: np.ndarray = _decoder(PREDICTORS[codec.predictor])(shaped, axis=-2)
            return found
        return array


def _shape(
    array: np.ndarray, full: tuple[int, int], rows: int, cols: int, contig: int, tiled: bool
) -> np.ndarray:
    """``array`` as (rows, cols, contig): a whole tile cut to the image, a strip's rows, or a
    tile some writers store cut to the image already (JPEG, PNG, GeoTIFF), exactly as tifffile
    accepts them; any other size is an error, never a guess."""
    flat = array.reshape(-1)
    size = full[0] * full[1] * contig
    if flat.size > size:
        flat = flat[:size]
    if flat.size == size:
        return flat.reshape(full[0], full[1], contig)[:rows, :cols]
    if tiled:
        for shape in ((rows, cols, contig), (rows, full[1], contig)):
            if flat.size == shape[0] * shape[1] * shape[2]:
                return flat.reshape(shape)[:rows, :cols]
    raise ValueError(
        f"a {'tile' if tiled else 'strip'} decoded to {flat.size} samples, "
        f"expected {size}: the file may be damaged"
    )
