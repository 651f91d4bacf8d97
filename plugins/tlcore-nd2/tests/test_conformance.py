"""The ND2 plugin against tlcore's conformance kit, on every ND2 sample in the shared test data.

No ND2 writer exists (the format is Nikon's; the nd2 library only reads), so the kit runs on
the real files only. The reference read goes through nd2's own ``asarray()``, reshaped to TCZYX
by hand from ``ND2File.sizes``, independently of the plugin's frame reader.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nd2
import numpy as np
import pytest

from tlcore.testing import Expected, ReaderConformance


def nd2_reference(path: Path, position: int = 0) -> Callable[[], np.ndarray]:
    """The full TCZYX array of one position, read with ``nd2.ND2File.asarray``."""

    def read() -> np.ndarray:
        with nd2.ND2File(path) as f:
            data = f.asarray()
            dims = list(f.sizes)
        if "P" in dims:
            data = np.take(data, position, axis=dims.index("P"))
            dims.remove("P")
        for d in "TCZYXS":
            if d not in dims:
                data = data[np.newaxis]
                dims.insert(0, d)
        data = data.transpose([dims.index(d) for d in "TCZSYX"])
        t, c, z, s, y, x = data.shape
        out: np.ndarray = data.reshape(t, c * s, z, y, x)  # RGB samples become channels
        return out

    return read


SAMPLES: dict[str, dict[str, Any]] = {
    "cerevisiae": dict(
        shape=(1, 2, 1, 256, 256),
        channel_names=["DIC", "FITC BP"],
        pixel_sizes=(None, 0.10833333333333334, 0.10833333333333334),
    ),
    "multichannel": dict(
        shape=(1, 4, 1, 256, 256),
        channel_names=["Mono", "DAPI", "FITC BP", "TRITC BP"],
        pixel_sizes=(None, 0.323390342594048, 0.323390342594048),
    ),
    "pbmc": dict(
        shape=(1, 4, 1, 256, 256),
        pixel_sizes=(None, 0.646780685188096, 0.646780685188096),
    ),
    "timelapse": dict(
        shape=(53, 1, 1, 64, 64),
        channel_names=["GFP 488 nm"],
        pixel_sizes=(None, 0.325, 0.325),
        # median step between the recorded frame times (NIS' measured average: 500.16 ms)
        interval=0.5001599121093747,
    ),
    "zstack": dict(
        shape=(1, 1, 11, 128, 128),
        channel_names=["FITC BP"],
        pixel_sizes=(6.0, 0.323390342594048, 0.323390342594048),
    ),
}


class TestND2Conformance(ReaderConformance):
    reader_name = "nd2"
    # nd2 reads the file's metadata blocks whole on open (experiment loops, channels, per-frame
    # times, custom data): ~290 kB of these 0.9 MB samples, over a quarter of the file.
    metadata_fraction = 0.4

    @pytest.fixture(params=list(SAMPLES))
    def expected(self, request: pytest.FixtureRequest, testdata: Path) -> Expected:
        path = testdata / "nd2" / f"example-{request.param}.nd2"
        _, c, _, y, x = SAMPLES[request.param]["shape"]
        return Expected(
            path=path,
            # An ND2 frame is the storage unit: every channel of one (T, position, Z), stored
            # interleaved per pixel, so one channel cannot be read for less than the frame.
            storage_chunks=(1, c, 1, y, x),
            scenes=["XYPos:0"],
            n_levels=1,
            dtype="uint16",
            timestamps=True,
            reference=nd2_reference(path),
            **SAMPLES[request.param],
        )

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path | None:
        pytest.skip(
            "no ND2 writer exists (the nd2 library only reads; ND2 files come from NIS-Elements): "
            "pixels are checked against nd2's own read of the real samples instead"
        )
