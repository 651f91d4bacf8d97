"""The CZI plugin against tlcore's conformance kit: every readable CZI of the shared test data,
and CZI files written here with Zeiss' own writer (pylibCZIrw)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlcore.testing import Expected, ReaderConformance

Ref = Callable[..., Callable[[], np.ndarray]]

UM = 1e6  # the files store metres


def _shared(name: str, d: Path, aics: Ref, mosaic: Ref) -> Expected:
    czi = d / "czi"
    table: dict[str, Callable[[], Expected]] = {
        "CellDivision": lambda: Expected(
            path=czi / "CellDivision_T3_Z5_CH2_X240_Y170.czi",
            shape=(3, 2, 5, 170, 240),
            scenes=["Image:0"],
            n_levels=1,
            interval=60.0,  # TimeSeriesSetup/Interval; the subblock clock gives 60.03, 60.07
            timestamps=True,
            dtype="uint16",
            channel_names=["LED555", "LED470"],
            pixel_sizes=(0.32, 9.0576674152210312e-08 * UM, 9.0576674152210312e-08 * UM),
            reference=aics(czi / "CellDivision_T3_Z5_CH2_X240_Y170.czi"),
        ),
        "RGB-8bit": lambda: Expected(
            path=czi / "RGB-8bit.czi",
            shape=(1, 3, 1, 624, 924),
            scenes=["Image:0"],
            n_levels=1,
            timestamps=False,
            dtype="uint8",
            channel_names=["R", "G", "B"],
            pixel_sizes=(None, 1.0833333333333333, 1.0833333333333333),
            # a Bgr24 pixel stores its three samples together: one read gives R, G and B
            # Uncompressed: read by rows, so the dask chunks are bands (tlcore_czi.direct).
            storage_chunks=(1, 3, 1, 19, 924),
            reference=aics(czi / "RGB-8bit.czi"),
        ),
        "WellD6-7-scene-1-pyramid": lambda: Expected(
            path=czi / "WellD6-7_S2.czi",
            shape=(1, 1, 1, 440, 544),
            scenes=["D6-D6", "D7-D7"],
            scene=1,
            n_levels=2,
            dtype="uint16",
            channel_names=["AF488"],
            pixel_sizes=(None, 0.1, 0.1),
            reference=mosaic(czi / "WellD6-7_S2.czi", 1),
        ),
        "mosaic_test": lambda: Expected(
            path=czi / "mosaic_test.czi",
            shape=(1, 1, 1, 624, 1756),
            scenes=["TR1"],
            n_levels=1,
            dtype="uint16",
            channel_names=["EGFP"],
            pixel_sizes=(1.0, 1.0833333333333333, 1.0833333333333333),
            reference=mosaic(czi / "mosaic_test.czi", 0),
        ),
        "s_1_t_1_c_1_z_1": lambda: Expected(
            path=czi / "s_1_t_1_c_1_z_1.czi",
            shape=(1, 1, 1, 325, 475),
            scenes=["Image:0"],
            n_levels=1,
            dtype="uint16",
            channel_names=["Bright"],
            reference=aics(czi / "s_1_t_1_c_1_z_1.czi"),
        ),
        "tiles_time_z": lambda: Expected(
            path=czi / "tiles_time_z.czi",
            shape=(2, 2, 2, 512, 512),
            scenes=["Image:0"],
            n_levels=1,
            timestamps=False,
            dtype="uint8",
            channel_names=["Ch1", "T PMT"],
            pixel_sizes=(4.0, 1.6605316419276782, 1.6605316419276782),
            reference=mosaic(czi / "tiles_time_z.czi"),
        ),
    }
    return table[name]()


SHARED = [
    "CellDivision",
    "RGB-8bit",
    "WellD6-7-scene-1-pyramid",
    "mosaic_test",
    "s_1_t_1_c_1_z_1",
    "tiles_time_z",
]

GENERATED: dict[str, dict[str, Any]] = {
    # T=4, C=3, Z=5 with two scenes; the second scene is the one checked.
    "generated-tcz-2-scenes": dict(shape=(4, 3, 5, 90, 120), dtype="uint16", n_scenes=2),
    # a 2 x 3 mosaic of tiles per plane, stitched back by libCZI.
    "generated-mosaic": dict(shape=(2, 2, 3, 150, 210), dtype="uint8", tiles=(2, 3)),
    "generated-float32": dict(shape=(3, 1, 2, 64, 80), dtype="float32"),
}


class TestCziConformance(ReaderConformance):
    reader_name = "czi"
    # CZI metadata is one XML document that list_scenes must read whole, beside the subblock
    # directory: 290 kB of XML in the 1 MB s_1_t_1_c_1_z_1.czi (its segment header says so)
    # and 630 kB read of the 1.8 MB WellD6-7_S2.czi, over the kit's 256 KiB / 25% budget.
    metadata_floor_bytes = 512 * 1024
    metadata_fraction = 0.4

    @pytest.fixture(params=[*SHARED, *GENERATED])
    def expected(
        self, request: pytest.FixtureRequest, tmp_path: Path, aics_ref: Ref, mosaic_ref: Ref
    ) -> Expected:
        if request.param in SHARED:
            testdata: Path = request.getfixturevalue("testdata")
            return _shared(request.param, testdata, aics_ref, mosaic_ref)
        spec = GENERATED[request.param]
        write = request.getfixturevalue("czi_writer")
        rng = np.random.default_rng(7)
        n_scenes = spec.get("n_scenes", 1)
        if spec["dtype"] == "float32":
            arrays = [rng.random(spec["shape"], dtype=np.float32) for _ in range(n_scenes)]
        else:
            info = np.iinfo(spec["dtype"])
            arrays = [
                rng.integers(0, info.max, spec["shape"], dtype=spec["dtype"])
                for _ in range(n_scenes)
            ]
        n_channels = spec["shape"][1]
        path = write(
            tmp_path / f"{request.param}.czi",
            arrays,
            tiles=spec.get("tiles", (1, 1)),
            channel_names=[f"dye{c}" for c in range(n_channels)],
        )
        scene = n_scenes - 1
        want = arrays[scene]
        return Expected(
            path=path,
            shape=spec["shape"],
            scenes=[f"Image:{i}" for i in range(n_scenes)] if n_scenes > 1 else None,
            scene=scene,
            n_levels=1,
            timestamps=False,
            dtype=spec["dtype"],
            channel_names=[f"dye{c}" for c in range(n_channels)],
            pixel_sizes=(0.5, 0.25, 0.25),
            reference=lambda: want,
        )

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path:
        from tlcore_czi.testing import write_czi

        return write_czi(directory / "kit-sample.czi", [pixels])

    def make_garbage(self, tmp_path: Path) -> Path:
        path = tmp_path / "garbage.czi"
        path.write_bytes(b"this is not an image\x00" * 64)
        return path
