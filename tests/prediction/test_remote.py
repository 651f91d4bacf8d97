"""tlcore.predict on an OME-Zarr in S3 (moto on loopback, behind the counting relay): workers
set up like the training workers read the tiles, through obstore where it is installed, and the
output equals a prediction of the same image from local disk."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from nets import conv2  # type: ignore[import-not-found]

import tlcore
from tlcore.io.relay import Relay
from tlcore.testing import write_ome_zarr

SHAPE = (2, 2, 6, 48, 64)
CHUNKS = (1, 1, 6, 24, 32)


def test_workers_read_s3_tiles_like_training_workers(
    s3_server: dict[str, Any], s3_movie: Callable[..., str], relay: Relay, tmp_path: Path
) -> None:
    url = s3_movie("p-remote", SHAPE, CHUNKS, seed=4)
    local = write_ome_zarr(tmp_path / "local.ome.zarr", shape=SHAPE, chunks=CHUNKS, seed=4)
    kwargs: dict[str, Any] = dict(tile=(6, 24, 32), halo=0, blend="none", batch_size=2)
    want = tmp_path / "want.ome.zarr"
    tlcore.predict(conv2(), local, want, num_workers=0, **kwargs)
    got = tmp_path / "got.ome.zarr"
    since = len(relay.lines)
    tlcore.predict(conv2(), url, got, num_workers=2, storage_options=relay.options(s3_server),
                   **kwargs)  # fmt: skip
    np.testing.assert_array_equal(zarr.open_array(got / "0")[:], zarr.open_array(want / "0")[:])
    chunk_gets = [
        agent for agent, line in zip(relay.agents[since:], relay.lines[since:])
        if line.startswith("GET") and "/movie.ome.zarr/0/c/" in line
    ]  # fmt: skip
    assert chunk_gets
    if importlib.util.find_spec("obstore") is not None:
        # worker_init marks the workers: their S3 chunk reads go through obstore. The parent
        # never does: its reads are the probe of the first tile (the output's channels), the
        # 2 chunks of its 2 channels.
        assert chunk_gets.count("aiobotocore") == 2, chunk_gets
        assert chunk_gets.count("object_store") == len(chunk_gets) - 2
    else:
        assert "object_store" not in chunk_gets
