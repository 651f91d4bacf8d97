"""Fixtures for the CZI plugin's tests: CZI files written with Zeiss' own writer (pylibCZIrw),
and independent reference reads through the native libraries (never through tlcore_czi)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def czi_writer() -> Callable[..., Path]:
    from tlcore_czi.testing import write_czi

    return write_czi


def aics_reference(path: Path, scene: int | None = None) -> Callable[[], np.ndarray]:
    """Every plane of a non-mosaic scene read raw through aicspylibczi (another library than
    the one tlcore_czi reads pixels with), TCZYX; RGB samples reversed from B, G, R."""

    def read() -> np.ndarray:
        from aicspylibczi import CziFile

        czi = CziFile(str(path))
        sizes = dict(czi.get_dims_shape()[0])
        t_n, c_n, z_n = (sizes.get(d, (0, 1))[1] for d in "TCZ")
        planes = []
        for t in range(t_n):
            for c in range(c_n):
                for z in range(z_n):
                    kwargs = {d: v for d, v in (("T", t), ("C", c), ("Z", z)) if d in sizes}
                    if scene is not None:
                        kwargs["S"] = scene
                    data, dims = czi.read_image(**kwargs)
                    names = [d for d, _ in dims]
                    if "A" in names:  # RGB: B, G, R samples -> R, G, B channels
                        rgb = data.reshape(data.shape[-3:])[..., ::-1]
                        planes.append(np.moveaxis(rgb, -1, 0))
                    else:
                        planes.append(data.reshape(data.shape[-2:])[None])
        arr = np.stack(planes)  # (T*C*Z, samples, Y, X)
        samples, y, x = arr.shape[1:]
        arr = arr.reshape(t_n, c_n, z_n, samples, y, x).transpose(0, 1, 3, 2, 4, 5)
        return arr.reshape(t_n, c_n * samples, z_n, y, x)

    return read


def libczi_mosaic_reference(path: Path, scene: int | None = None) -> Callable[[], np.ndarray]:
    """A stitched scene read whole, plane by plane, through pylibCZIrw with its own bounding
    box (no ROI arithmetic, no chunking, no tlcore_czi parsing)."""

    def read() -> np.ndarray:
        from pylibCZIrw import czi as pyczi

        with pyczi.open_czi(str(path)) as doc:
            box = doc.total_bounding_box_no_pyramid
            rects = doc.scenes_bounding_rectangle_no_pyramid
            roi = rects[scene] if scene is not None and rects else None
            if roi is None:
                x0, x1 = box["X"]
                y0, y1 = box["Y"]
                roi = (x0, y0, x1 - x0, y1 - y0)
            t_n, c_n, z_n = (box[d][1] for d in "TCZ")
            out = [
                [
                    [
                        doc.read(roi=roi, plane={"T": t, "C": c, "Z": z}, scene=scene)[..., 0]
                        for z in range(z_n)
                    ]
                    for c in range(c_n)
                ]
                for t in range(t_n)
            ]
        return np.asarray(out)

    return read


@pytest.fixture
def aics_ref() -> Callable[..., Callable[[], np.ndarray]]:
    return aics_reference


@pytest.fixture
def mosaic_ref() -> Callable[..., Callable[[], np.ndarray]]:
    return libczi_mosaic_reference
