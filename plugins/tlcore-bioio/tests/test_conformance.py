"""The bioio bridge against tlcore's conformance kit, on files the tests write: a TIFF series
(one file per T, C, Z plane, read through bioio-tiff-glob from a glob pattern) and GIF
timelapses (bioio-imageio). References are bioio's own full reads of the same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlcore.testing import Expected, ReaderConformance

SERIES_SHAPE = (3, 2, 2, 24, 20)


def bioio_full_read(path: str, **kwargs: object) -> np.ndarray:
    """bioio's whole-image read, TCZYX, RGB samples folded into C (sample fastest)."""
    from bioio import BioImage

    bio = BioImage(path, **kwargs)
    data = np.asarray(bio.get_image_data())
    if "".join(bio.dims.order) == "TCZYXS":
        t, c, z, y, x, s = data.shape
        data = np.moveaxis(data, 5, 2).reshape(t, c * s, z, y, x)
    return data


def write_series(directory: Path, pixels: np.ndarray) -> str:
    """One 2-D TIFF per (T, C, Z) plane, named S0_T{t}_C{c}_Z{z}.tif; returns the pattern."""
    import tifffile

    directory.mkdir(parents=True, exist_ok=True)
    for t, c, z in np.ndindex(*pixels.shape[:3]):
        tifffile.imwrite(directory / f"S0_T{t}_C{c}_Z{z}.tif", pixels[t, c, z])
    return str(directory / "*.tif")


def write_gif(path: Path, frames: np.ndarray) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, frames, duration=100, loop=0)
    return path


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bioio-samples")
    rng = np.random.default_rng(7)
    series = (rng.random(SERIES_SHAPE) * 60000).astype(np.uint16)
    write_series(root / "series", series)
    np.save(root / "series.npy", series)
    write_gif(root / "gray.gif", (rng.random((5, 30, 40)) * 255).astype(np.uint8))
    write_gif(root / "rgb.gif", (rng.random((4, 30, 40, 3)) * 255).astype(np.uint8))
    return root


class TestBioioBridge(ReaderConformance):
    reader_name = "bioio"
    require_reference = True
    # bioio-tiff-glob sizes a series by opening its first files through tifffile: on the kit's
    # large sample (16 files of one 240 KiB plane each) that reads about 4 planes (0.95 MiB)
    # per metadata hook. That is the library's own open, which the bridge cannot make cheaper;
    # a reader that read every pixel at open (3.75 MiB here) still fails.
    metadata_floor_bytes = 1 * 2**20

    @pytest.fixture(params=["tiff-series", "gray-gif", "rgb-gif"])
    def expected(self, request: pytest.FixtureRequest, samples: Path) -> Expected:
        if request.param == "tiff-series":
            pattern = str(samples / "series" / "*.tif")
            return Expected(
                path=pattern,
                shape=SERIES_SHAPE,
                scenes=["Image:0"],
                n_levels=1,
                timestamps=False,
                dtype="uint16",
                pixel_sizes=(None, None, None),
                # tiff-glob reads one Z stack per (T, C).
                storage_chunks=(1, 1, 2, 24, 20),
                reference=lambda: np.load(samples / "series.npy"),
            )
        name = "gray.gif" if request.param == "gray-gif" else "rgb.gif"
        path = samples / name
        # Pillow decodes every GIF frame as RGB: three channels, as bioio reports them.
        return Expected(
            path=path,
            shape=(5 if name == "gray.gif" else 4, 3, 1, 30, 40),
            scenes=["Image:0"],
            n_levels=1,
            timestamps=False,
            dtype="uint8",
            channel_names=["R", "G", "B"],
            storage_chunks=(1, 3, 1, 30, 40),
            reference=lambda: bioio_full_read(str(path)),
        )

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path | None:
        return Path(write_series(directory / "written", pixels))
