"""ComputeDaskd's eager read of a whole timepoint: converted a few planes at a time into the
output, so its peak is about the output array, with the same pixels as a plain read."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tlcore import ComputeDaskd, LoadLazyd
from tlcore.transforms import arrays


@pytest.mark.parametrize("dtype", ["float16", "float32", None])
def test_whole_timepoint_is_converted_plane_by_plane(
    tmp_path: Path, dtype: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 x 8 planes of 256 x 256 uint16 (2 MiB): lower the threshold so the chunkwise path runs.
    monkeypatch.setattr(arrays, "CHUNKWISE_BYTES", 0)
    monkeypatch.setattr("tlcore.transforms.compute.CHUNKWISE_BYTES", 0)
    pixels = np.random.default_rng(3).integers(0, 65535, (1, 2, 8, 256, 256), dtype="uint16")
    path = tmp_path / "t.ome.tif"
    tifffile.imwrite(path, pixels, ome=True, metadata={"axes": "TCZYX"})
    sample = LoadLazyd(keys="raw")({"original_path": str(path), "T": 0})
    want = pixels[0].astype(dtype or np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracemalloc.start()
        got = ComputeDaskd(keys="raw", dtype=dtype, scheduler="synchronous")(sample)["raw"]
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    array = got.numpy()
    assert array.dtype == want.dtype
    assert np.array_equal(array, want)
    # The output plus an eighth of it (batches of planes), plus small change: not the uint16
    # image beside its converted copy (1.5x for float32, 2x for float16).
    assert peak <= 1.3 * array.nbytes, (peak, array.nbytes)
