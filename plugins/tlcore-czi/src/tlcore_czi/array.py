"""The pixels: TCZYX regions of one CZI scene, read through Zeiss' libCZI.

Stitched scenes (the default) go through pylibCZIrw's ROI reads: each (T, C, Z) plane of a
region is one ``CziReader.read(roi=..., plane=..., scene=..., zoom=...)``, which composes only
the subblocks the rectangle touches (mosaic tiles stitched, pyramid layers picked by zoom) and
decodes nothing else, but decodes each of those subblocks whole. Where one uncompressed
full-resolution subblock covers the whole rectangle (the usual one-subblock-per-plane file, or a
crop inside one mosaic tile), the rows and columns are read straight from the file instead
(:mod:`tlcore_czi.direct`), so a crop reads about its own bytes, not whole planes. Raw tiles
(the ``czi_tiles`` option) go through aicspylibczi, which reads one subblock by its M index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlcore import Source
from tlcore.lazy import ArrayReader, Region
from tlcore_czi.direct import DirectPlanes
from tlcore_czi.document import Scene, load


class _CziReaderBase(ArrayReader):
    """What both readers share: plane bookkeeping and RGB handling (BGR samples -> R, G, B)."""

    def __init__(self, source: Source, scene: Scene, level: int) -> None:
        super().__init__(scene.shape(level), scene.dtype, scene.chunks(level))
        # Plain values only: the reader is pickled into every DataLoader worker.
        self.source = source
        self.scene_id = scene.id
        self.level = level
        self.czi_index = scene.czi_index
        self.rect = scene.rect
        self.factor = scene.factors[level]
        self.starts = {d: scene.ranges[d][0] for d in ("T", "C", "Z")}
        self.present = {d for d in ("T", "C", "Z") if any(d in b.dims for b in scene.blocks[:1])}
        self.samples = scene.samples
        self.pixel_type = scene.pixel_type_name

    def identity(self) -> tuple[Any, ...]:
        return (self.source.key, self.scene_id, self.level)

    def _plane(self, t: int, c: int, z: int) -> dict[str, int]:
        coords = {"T": t + self.starts["T"], "C": c + self.starts["C"], "Z": z + self.starts["Z"]}
        return {d: v for d, v in coords.items() if d in self.present}

    def _read_plane(self, handle: Any, plane: dict[str, int], ys: slice, xs: slice) -> np.ndarray:
        """One plane of the region as (h, w, samples), samples in the file's order."""
        raise NotImplementedError

    def _read(self, handle: Any, region: Region) -> np.ndarray:
        ts, cs, zs, ys, xs = region
        out = np.empty(tuple(s.stop - s.start for s in region), dtype=self.dtype)
        if out.size == 0:
            return out
        n = self.samples
        czi_channels = range(cs.start // n, (cs.stop - 1) // n + 1)
        for ti, t in enumerate(range(ts.start, ts.stop)):
            for z_i, z in enumerate(range(zs.start, zs.stop)):
                for c in czi_channels:
                    block = self._read_plane(handle, self._plane(t, c, z), ys, xs)
                    if n == 3:
                        block = block[..., ::-1]  # libCZI hands B, G, R; tlcore gives R, G, B
                    for k in range(n):
                        ci = c * n + k
                        if cs.start <= ci < cs.stop:
                            out[ti, ci - cs.start, z_i] = block[..., k]
        return out


class CziPlaneReader(_CziReaderBase):
    """A stitched CZI scene (any pyramid level) read by ROI through pylibCZIrw."""

    def _open(self) -> DirectPlanes:
        # The subblock index comes from the parsed document (cached per process), not from
        # the pickled reader: a reader stays a few hundred bytes whatever the number of planes.
        scene = next(s for s in load(self.source).scenes if s.id == self.scene_id)
        return DirectPlanes(self.source.uri, scene.blocks, self.dtype, self.samples)

    def _read_plane(self, handle: Any, plane: dict[str, int], ys: slice, xs: slice) -> np.ndarray:
        f = self.factor
        x0, y0, _, _ = self.rect
        h, w = ys.stop - ys.start, xs.stop - xs.start
        roi = (x0 + xs.start * f, y0 + ys.start * f, w * f, h * f)
        if f == 1:
            direct: np.ndarray | None = handle.read(plane, roi)
            if direct is not None:
                return direct
        handle = handle.czi
        # libCZI sizes the result as floor(extent * zoom): nudge 1/f up so 1/3 never rounds
        # a pixel away; the layer it picks is the same.
        zoom = None if f == 1 else min(1.0, (1.0 / f) * (1 + 1e-9))
        try:
            block: np.ndarray = handle.read(
                roi=roi,
                plane=plane,
                scene=self.czi_index,
                zoom=zoom,
                pixel_type=self.pixel_type,
            )
        except RuntimeError as exc:
            raise OSError(
                f"{self.source.uri} scene {self.scene_id!r}: libCZI could not read plane "
                f"{plane} ({exc}); the file may be damaged or truncated"
            ) from exc
        if block.shape[:2] != (h, w):
            raise ValueError(
                f"{self.source.uri} scene {self.scene_id!r} level {self.level}: libCZI returned "
                f"{block.shape[:2]} pixels for a {(h, w)} region (zoom {zoom})"
            )
        return block


class CziTileReader(_CziReaderBase):
    """One raw mosaic tile (a subblock per plane, no stitching) read through aicspylibczi."""

    def __init__(self, source: Source, scene: Scene, level: int) -> None:
        super().__init__(source, scene, level)
        assert scene.tile is not None
        self.m = scene.tile.m
        self.has_m = any("M" in b.dims for b in scene.blocks[:1])

    def _open(self) -> Any:
        try:
            from aicspylibczi import CziFile
        except ImportError as exc:
            raise ImportError(
                "the czi_tiles option reads raw tiles through aicspylibczi: "
                "pip install 'tlcore-czi[tiles]'"
            ) from exc
        return CziFile(self.source.uri)  # opens the file "rb"

    def _read_plane(self, handle: Any, plane: dict[str, int], ys: slice, xs: slice) -> np.ndarray:
        kwargs = dict(plane)
        if self.czi_index is not None:
            kwargs["S"] = self.czi_index
        if self.has_m:
            kwargs["M"] = self.m
        data, dims = handle.read_image(**kwargs)
        names = [d for d, _ in dims]
        h, w = self.rect[3], self.rect[2]
        block = np.asarray(data).reshape((h, w, self.samples) if "A" in names else (h, w, 1))
        return block[ys, xs]
