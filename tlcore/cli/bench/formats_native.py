"""The baselines of ``tlcore bench formats``: one crop read with the format's own library, and
with bioio. Each returns a function of the crop box (T, C, Z, Y, X slices, T and C integers).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Box = tuple[Any, ...]


def native_crop(fmt: str, path: Path) -> Callable[[Box], np.ndarray]:
    """A reader of crops through pylibCZIrw (one ROI per plane), tifffile's zarr store of the
    series, or zarr."""
    if fmt.startswith("czi"):
        from pylibCZIrw import czi as pyczi

        reader = pyczi.CziReader(str(path))
        x0, y0 = reader.total_bounding_rectangle[:2]

        def czi(box: Box) -> np.ndarray:
            t, c, zs, ys, xs = box
            roi = (x0 + xs.start, y0 + ys.start, xs.stop - xs.start, ys.stop - ys.start)
            planes = [reader.read(roi=roi, plane={"T": t, "C": c, "Z": z})[..., 0]
                      for z in range(zs.start, zs.stop)]  # fmt: skip
            return np.stack(planes)

        return czi
    if fmt.startswith("ome-zarr"):
        import zarr

        array = zarr.open_array(str(path / "0"), mode="r")

        def zarr_crop(box: Box) -> np.ndarray:
            return np.asarray(array[box])

        return zarr_crop
    import tifffile
    import zarr

    series = tifffile.TiffFile(path).series[0]
    store = zarr.open_array(series.aszarr(), mode="r")
    axes = series.axes

    def tiff(box: Box) -> np.ndarray:
        by_axis = dict(zip("TCZYX", box))
        return np.asarray(store[tuple(by_axis.get(a, 0) for a in axes)])

    return tiff


def bioio_crop(path: Path) -> Callable[[Box], np.ndarray]:
    """A reader of crops through ``bioio.BioImage`` (whichever bioio plugin is installed)."""
    from bioio import BioImage

    image = BioImage(str(path))

    def crop(box: Box) -> np.ndarray:
        t, c, zs, ys, xs = box
        lazy = image.get_image_dask_data("ZYX", T=t, C=c)
        return np.asarray(lazy[zs, ys, xs].compute())

    return crop
