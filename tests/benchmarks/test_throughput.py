"""Crops per second through tlcore's DataLoader against direct zarr reads of the same crops,
in one run (a small version of ``tlcore bench throughput``; ``make bench-report`` runs the
full one). Prints the table and the ratios; asserts only that the pixels agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

import tlcore
from tlcore.cli.bench.throughput import Settings, format_table, make_dataset, random_crops, run
from tlcore.lazy.compute import compute

pytestmark = pytest.mark.benchmark


def test_throughput_against_direct(tmp_path: Path) -> None:
    settings = Settings(
        shape=(32, 512, 512),
        timepoints=2,
        crops=60,
        workers=2,
        data_dir=tmp_path,
        rows=("direct", "tlcore", "tlcore-zarr", "tlcore-dask", "decoders", "chunks"),
        chunk_counts=(300_000,),
    )
    path = make_dataset(settings)
    raw = zarr.open_array(str(path), path="0", mode="r")
    image = tlcore.open_lazy(path)
    for t, z, y, x in random_crops(settings, 5):
        box = (t, slice(0, 1), slice(z, z + 32), slice(y, y + 128), slice(x, x + 128))
        assert np.array_equal(compute(image.data[box]), raw[box])
    result = run(settings, log=lambda line: None)
    print("\n" + format_table(result))
    print(
        f"tlcore / direct: {result['ratio_tlcore_direct']} at {settings.workers} workers, "
        f"{result['ratio_tlcore_direct_one_process']} in one process; with zarr decoding "
        f"(the path's own cost) {result['ratio_tlcore_zarr_direct']} and "
        f"{result['ratio_tlcore_zarr_direct_one_process']}"
    )
    names = {row["name"] for row in result["rows"]}
    assert {"direct", "tlcore", "tlcore-zarr", "tlcore-dask"} <= names
