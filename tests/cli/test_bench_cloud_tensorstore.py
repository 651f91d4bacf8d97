"""The tensorstore comparison of ``tlcore bench cloud`` (:mod:`tlcore.cli.bench.cloud_tensorstore`):
its figures (crops/s and CPU per crop) and how tlcore's rows are set against them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlcore.cli.bench.cloud import Row, _tensorstore_note
from tlcore.cli.bench.cloud_tensorstore import Run, crop_boxes


def test_the_note_sets_each_zarr_row_against_the_mean_of_both_tensorstore_runs() -> None:
    rows = [
        Row("S3 zarr obstore 30 ms", 4, 160, seconds=2.0, steady=90.0, first_s=0.3, cpu_ms=24.0),
        Row("S3 zarr obstore 0 ms", 4, 160, seconds=1.0, steady=170.0, first_s=0.3, cpu_ms=5.0),
        Row("S3 tiff obstore 30 ms", 4, 160, seconds=4.0, steady=45.0, first_s=0.3, cpu_ms=40.0),
    ]
    note = _tensorstore_note(Run(100.0, 10.0), Run(80.0, 14.0), 30, rows)
    assert "100.0 before and 80.0 after tlcore's rows, mean 90.0 crops/s, CPU 12.0 ms/crop" in note
    # 80 crops/s against 90; 24 ms of CPU per crop against 12. The 0 ms and TIFF rows stay out.
    assert note.endswith("obstore, 4 workers 0.89x (steady 1.00x; CPU 24.0 ms/crop, 2.0x)")
    assert "tiff" not in note and "5.0 ms" not in note
    # A run of the environment's client names its rows without one: "default".
    plain = [Row("S3 zarr 30 ms", 2, 160, seconds=2.0, steady=90.0, first_s=0.3, cpu_ms=24.0)]
    assert _tensorstore_note(Run(100.0, 10.0), Run(80.0, 14.0), 30, plain).endswith(
        "default, 2 workers 0.89x (steady 1.00x; CPU 24.0 ms/crop, 2.0x)"
    )
    missing = _tensorstore_note("not installed", Run(1.0, 1.0), 30, rows)
    assert missing.endswith("ms: not installed")


def test_tensorstore_reads_the_crops_and_counts_the_cpu_of_all_its_threads(tmp_path: Path) -> None:
    pytest.importorskip("tensorstore")
    from tlcore.cli.bench.cloud_tensorstore import _read_crops
    from tlcore.testing.synthetic import write_ome_zarr

    store = write_ome_zarr(tmp_path / "m.ome.zarr", shape=(2, 1, 16, 128, 128),
                           chunks=(1, 1, 16, 64, 64))  # fmt: skip
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": f"{store}/0/"}}
    boxes = crop_boxes((2, 16, 128, 128), (16, 64, 64), 24, seed=3)
    assert all(0 <= y <= 64 and 0 <= x <= 64 for _, _, y, x in boxes)
    run = _read_crops(spec, boxes, (16, 64, 64))
    assert run.rate > 0
    # Every crop decodes at least one zstd chunk of 128 KiB: some CPU per crop, in any thread.
    assert 0.0 < run.cpu_ms < 1000.0
    assert np.isfinite(run.cpu_ms)
