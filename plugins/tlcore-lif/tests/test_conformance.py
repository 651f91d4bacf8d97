"""The LIF plugin against tlcore's conformance kit, on every readable LIF sample file.

References are independent reads: liffile's own whole-image ``asarray`` (reshaped to TCZYX by
hand) and, for the stitched tile scan, bioio-lif's stitched image.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tlcore.testing import Expected, ReaderConformance

MOSAIC = "lif/PR2729_frameOrderCombinedScanTypes.lif"
XZ = "lif/testdata_2channel_xz.lif"


def liffile_reference(path: Path, image: int) -> Callable[[], np.ndarray]:
    """A whole image read by liffile, its stored axes moved to TCZYX (absent axes size 1)."""

    def read() -> np.ndarray:
        import liffile

        with liffile.LifFile(path, squeeze=False) as lif:
            im = lif.images[image]
            data, dims = im.asarray(), im.dims
        sizes = dict(zip(dims, data.shape))
        assert set(dims) <= set("TCZYX"), dims
        order = [dims.index(d) for d in "TCZYX" if d in dims]
        return data.transpose(order).reshape([sizes.get(d, 1) for d in "TCZYX"])

    return read


@functools.cache
def bioio_stitched(path: Path) -> np.ndarray:
    import bioio_lif
    from bioio import BioImage

    data = BioImage(path, reader=bioio_lif.Reader).get_image_dask_data("TCZYX").compute()
    return np.asarray(data)


SAMPLES = {
    "tilescan-stitched": lambda d: Expected(
        path=d / MOSAIC,
        shape=(2, 2, 3, 127, 127),
        scenes=["TileScan_001"],
        n_levels=1,
        interval=8.271,
        timestamps=True,
        dtype="uint8",
        channel_names=["Green", "Red"],
        # Z Length is -12.455 um over 3 planes: the size is its absolute value.
        pixel_sizes=(12.45523 / 2, 250 / 63, 250 / 63),
        reference=lambda: bioio_stitched(d / MOSAIC),
    ),
    "xzt-line-scan": lambda d: Expected(
        path=d / XZ,
        shape=(20, 2, 128, 1, 128),
        scenes=["xzt", "xzy", "xz"],
        n_levels=1,
        interval=10.07 / 19,
        timestamps=True,
        dtype="uint8",
        channel_names=["Green", "Red"],
        pixel_sizes=(17.8154 / 127, None, 17.81554 / 127),
        reference=liffile_reference(d / XZ, 0),
    ),
    "xzy-stack": lambda d: Expected(
        path=d / XZ,
        scene=1,
        shape=(1, 2, 128, 23, 128),
        timestamps=False,
        pixel_sizes=(17.8154 / 127, 5.039354 / 22, 17.81554 / 127),
        reference=liffile_reference(d / XZ, 1),
    ),
    "xz-plane": lambda d: Expected(
        path=d / XZ,
        scene=2,
        shape=(1, 2, 512, 1, 512),
        timestamps=False,
        reference=liffile_reference(d / XZ, 2),
    ),
}


class TestLifConformance(ReaderConformance):
    reader_name = "lif"

    @pytest.fixture(params=list(SAMPLES))
    def expected(self, request: pytest.FixtureRequest, testdata: Path) -> Expected:
        return SAMPLES[request.param](testdata)
