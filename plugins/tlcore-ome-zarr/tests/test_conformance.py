"""The OME-Zarr plugin against tlcore's conformance kit: shared real stores and generated ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from tlcore.testing import Expected, ReaderConformance, write_ome_zarr


def _zarr_reference(store: Path, array_path: str, axes: str) -> Any:
    """Level 0 read straight through zarr, reshaped to TCZYX by hand."""

    def read() -> np.ndarray:
        data = np.asarray(zarr.open_array(str(store), path=array_path, mode="r")[...])
        order = [axes.index(d) for d in "tczyx" if d in axes]
        data = data.transpose(order)
        shape = [data.shape[order.index(axes.index(d))] if d in axes else 1 for d in "tczyx"]
        return data.reshape(shape)

    return read


SHARED = {
    "timelapse-ngff-0.5": lambda d: Expected(
        path=d / "ome-zarr/example-timelapse_from_nd2.ome.zarr",
        shape=(53, 1, 1, 64, 64),
        scenes=["example-timelapse_from_nd2.ome"],
        n_levels=1,
        interval=0.50016,
        timestamps=False,
        dtype="uint16",
        pixel_sizes=(None, 0.325, 0.325),
        # nd2's writer stores all 53 timepoints in one zarr chunk: that is the storage unit.
        storage_chunks=(53, 1, 1, 64, 64),
        reference=_zarr_reference(d / "ome-zarr/example-timelapse_from_nd2.ome.zarr", "0", "tyx"),
    ),
    "bioformats2raw-series-1": lambda d: Expected(
        path=d / "ome-zarr/fake-series-2.zarr",
        shape=(1, 1, 1, 512, 512),
        scenes=["Image:0", "Image:1"],
        scene=1,
        n_levels=2,
        dtype="uint8",
        pixel_sizes=(None, None, None),
        reference=_zarr_reference(d / "ome-zarr/fake-series-2.zarr", "1/0", "tczyx"),
    ),
    "image-04-ngff-0.4": lambda d: Expected(
        path=d / "ome-zarr/image-04.zarr",
        shape=(1, 1, 2, 64, 64),
        scenes=["Image:0"],
        n_levels=2,
        dtype="float64",
        pixel_sizes=(1.0, 1.0, 1.0),
        reference=_zarr_reference(d / "ome-zarr/image-04.zarr", "0", "zyx"),
    ),
    "image-03-ngff-0.4": lambda d: Expected(
        path=d / "ome-zarr/image-03.zarr",
        shape=(1, 1, 2, 100, 100),
        n_levels=1,
        dtype="float64",
        reference=_zarr_reference(d / "ome-zarr/image-03.zarr", "0", "zyx"),
    ),
}

GENERATED = {
    "generated-0.5-tczyx-pyramid": dict(
        shape=(3, 2, 4, 96, 80), chunks=(1, 1, 2, 32, 32), n_levels=3, version="0.5", axes="tczyx"
    ),
    "generated-0.4-tyx": dict(
        shape=(5, 40, 50), chunks=(2, 16, 16), version="0.4", axes="tyx", interval_s=0.25
    ),
}


class TestOmeZarrConformance(ReaderConformance):
    reader_name = "ome-zarr"

    @pytest.fixture(params=[*SHARED, *GENERATED])
    def expected(self, request: pytest.FixtureRequest, tmp_path: Path) -> Expected:
        if request.param in SHARED:
            testdata: Path = request.getfixturevalue("testdata")
            return SHARED[request.param](testdata)
        kwargs: dict[str, Any] = dict(GENERATED[request.param])
        path = write_ome_zarr(tmp_path / f"{request.param}.ome.zarr", **kwargs)
        axes = kwargs["axes"]
        sizes = dict(zip(axes, kwargs["shape"]))
        return Expected(
            path=path,
            shape=tuple(sizes.get(d, 1) for d in "tczyx"),
            n_levels=kwargs.get("n_levels", 1),
            interval=kwargs.get("interval_s", 2.0),
            dtype="uint16",
            pixel_sizes=(1.0 if "z" in axes else None, 0.25, 0.25),
            storage_chunks=tuple(dict(zip(axes, kwargs["chunks"])).get(d, 1) for d in "tczyx"),
            reference=_zarr_reference(path, "0", axes),
        )

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path:
        # An OME-NGFF 0.5 store written with zarr alone, independently of the plugin.
        path = directory / "sample.ome.zarr"
        root = zarr.open_group(str(path), mode="w-", zarr_format=3)
        arr = root.create_array(
            "0",
            shape=pixels.shape,
            dtype=pixels.dtype,
            chunks=(1, 1, 1, *pixels.shape[3:]),
            dimension_names=list("tczyx"),
        )
        arr[...] = pixels
        axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
            {"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"
        ]
        transforms = [{"type": "scale", "scale": [1.0, 1.0, 1.0, 0.5, 0.5]}]
        root.attrs["ome"] = {
            "version": "0.5",
            "multiscales": [
                {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": transforms}]}
            ],
        }
        return path

    def make_garbage(self, tmp_path: Path) -> Path:
        # A directory with the extension and a zarr group that is not an OME-NGFF image.
        path = tmp_path / "not-an-image.ome.zarr"
        zarr.open_group(str(path), mode="w-").attrs["something"] = "else"
        return path
