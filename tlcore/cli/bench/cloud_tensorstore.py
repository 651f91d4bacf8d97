"""The tensorstore row of ``tlcore bench cloud``: the same random crops read by tensorstore with
8 threads in one process, from the same S3 store behind the same relay.

It runs in a process of its own (spawned): tensorstore aborts in a process forked after it ran
(NOTES), and the benchmark's DataLoader workers are forked from the benchmark's process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

THREADS = 8


def crop_boxes(
    shape: Sequence[int], roi: Sequence[int], crops: int, seed: int
) -> list[tuple[int, ...]]:
    """``crops`` random (t, z, y, x) starts of ``roi`` boxes in a (T, Z, Y, X) ``shape``,
    uniform like the datamodule's crops."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t_n, *zyx_n = shape
    return [
        (int(rng.integers(t_n)), *(int(rng.integers(n - r + 1)) for n, r in zip(zyx_n, roi)))
        for _ in range(crops)
    ]


class Run(NamedTuple):
    """tensorstore's figures on the crops: crops/s, and the CPU time of its process (every
    thread) per crop, comparable to the loader CPU of tlcore's rows."""

    rate: float
    cpu_ms: float


def _read_crops(spec: dict[str, Any], boxes: list[tuple[int, ...]], roi: Sequence[int]) -> Run:
    import tensorstore as ts

    array = ts.open(spec, read=True, open=True).result()

    def read(box: tuple[int, ...]) -> Any:
        t, z, y, x = box
        return array[t, 0, z : z + roi[0], y : y + roi[1], x : x + roi[2]].read().result()

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(read, boxes))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Run(len(boxes) / seconds, cpu / len(boxes) * 1000)


def _child(spec: dict[str, Any], boxes: list[tuple[int, ...]], roi: Sequence[int],
           credentials: tuple[str, str], conn: Any) -> None:  # fmt: skip
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = credentials
    try:
        conn.send(_read_crops(spec, boxes, roi))
    except Exception as exc:  # a bench row, not a test: say why it is missing
        conn.send(f"failed ({type(exc).__name__}: {str(exc)[:300]})")


def tensorstore_run(
    endpoint: str,
    bucket: str,
    array_path: str,
    credentials: tuple[str, str],
    shape: Sequence[int],
    roi: Sequence[int],
    crops: int,
    seed: int,
) -> Run | str:
    """The :class:`Run` of tensorstore with :data:`THREADS` threads reading ``crops`` random
    ``roi`` crops of the zarr v3 array ``s3://bucket/array_path`` (shape T, 1, Z, Y, X) through
    ``endpoint``; a string saying why when it cannot run (not installed, failed)."""
    try:
        import tensorstore  # noqa: F401
    except ImportError:
        return "not installed (pip install 'tlcore[bench]' for this row)"
    spec = {
        "driver": "zarr3",
        "kvstore": {
            "driver": "s3",
            "bucket": bucket,
            "path": array_path.rstrip("/") + "/",
            "endpoint": endpoint,
            "aws_region": "us-east-1",
            "aws_credentials": {"type": "environment"},
        },
    }
    boxes = crop_boxes(shape, roi, crops, seed)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(spec, boxes, tuple(roi), credentials, child))
    proc.start()
    try:
        if not parent.poll(600):
            return "failed (no answer within 600 s)"
        found: Run | str = parent.recv()
        return found
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
