"""One epoch of crops from S3 (moto on loopback, through a byte-counting proxy) against the same
OME-Zarr data on local disk, in one run: crops per second and bytes transferred per crop, with
the ratios. Run with ``make bench``; asserts only that both epochs give the same crops.

Loopback has no network latency: the S3 figure is the protocol's and the client's overhead
(request signing, HTTP, one GET per chunk), a floor for a real object store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tlcore
from tlcore.io.relay import Relay

pytestmark = pytest.mark.benchmark

SHAPE = (16, 1, 8, 256, 256)
CHUNKS = (1, 1, 8, 64, 64)  # 16 x 1 x 1 x 4 x 4 = 256 chunks
ROI = (8, 64, 64)
CROPS = 48


def _pipeline(options: dict[str, Any]) -> Any:
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    return Compose(
        [
            LoadLazyd(keys="raw", spatial_dims=3, storage_options=options),
            RandLazyCropd(keys="raw", roi_size=ROI),
            ComputeDaskd(keys="raw", dtype="float32"),
        ]
    )


def _epoch(path: str, options: dict[str, Any]) -> tuple[list[np.ndarray], float]:
    dm = tlcore.RandomTimelapseDatamodule(
        pd.DataFrame({"path": [path], "split": ["train"]}),
        transforms=_pipeline(options),
        samples_per_epoch={"train": CROPS},
        storage_options=options,
        seed=7,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    started = time.perf_counter()
    crops = [np.asarray(batch["raw"]) for batch in loader]
    return crops, time.perf_counter() - started


def test_epoch_from_s3_against_local_disk(
    s3_server: dict[str, Any],
    s3_new_bucket: str,
    synthetic_store: Callable[..., Path],
    file_opens: Any,
) -> None:
    import s3fs

    store = synthetic_store(shape=SHAPE, chunks=CHUNKS)
    s3fs.S3FileSystem(**s3_server).put(str(store), f"{s3_new_bucket}/m.ome.zarr", recursive=True)
    proxy = Relay(str(s3_server["endpoint_url"]))
    try:
        file_opens.watch(store)
        local, local_s = _epoch(str(store), {})
        chunk_files = [p for p in file_opens.paths if "/c/" in p and Path(p).is_file()]
        local_bytes = sum(Path(p).stat().st_size for p in chunk_files)
        file_opens.stop()
        before = proxy.bytes_down
        remote, remote_s = _epoch(f"s3://{s3_new_bucket}/m.ome.zarr", proxy.options(s3_server))
        remote_bytes = proxy.bytes_down - before
    finally:
        proxy.stop()
    assert len(local) == len(remote) == CROPS
    assert all(np.array_equal(a, b) for a, b in zip(local, remote))
    crop_bytes = int(np.prod(ROI)) * 2
    print(
        f"\none epoch of {CROPS} crops {ROI} uint16 from {SHAPE} in {CHUNKS} chunks "
        "(datamodule, 0 workers, opening included):\n"
        f"  local disk        {CROPS / local_s:7.1f} crops/s  "
        f"{local_bytes / CROPS / 1024:7.1f} KiB read per crop ({len(chunk_files)} chunk files)\n"
        f"  S3 (loopback)     {CROPS / remote_s:7.1f} crops/s  "
        f"{remote_bytes / CROPS / 1024:7.1f} KiB on the wire per crop (headers included)\n"
        f"  S3 / local        {local_s / remote_s:7.2f}x speed  "
        f"{remote_bytes / max(local_bytes, 1):7.2f}x bytes\n"
        f"  crop itself       {crop_bytes / 1024:7.1f} KiB (uncompressed)"
    )
