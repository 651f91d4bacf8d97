"""Resume after a real SIGKILL gives the bytes of an uninterrupted run; two gloo ranks write
disjoint units whose union is the one-process store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from nets import conv2  # type: ignore[import-not-found]

import tlcore
from tlcore.prediction.writer import RECORD_DIR
from tlcore.testing import write_ome_zarr

# Real processes (a killed CLI run, two gloo ranks): about 25 s, so in `make test-slow` (CI).
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def chunk_bytes(store: Path) -> dict[str, bytes]:
    """Every chunk file of level 0, by key."""
    root = store / "0" / "c"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tlcore.cli", "predict", *args]


def test_resume_after_sigkill(tmp_path: Path) -> None:
    movie = write_ome_zarr(tmp_path / "movie.ome.zarr", (4, 2, 4, 64, 64), dtype="uint16")
    common = [str(movie), "--model", "nets:slow_conv2", "--tile", "4,16,16", "--halo", "2",
              "--overlap", "0,4,4", "--chunks", "4,16,16", "--batch-size", "2",
              "--num-workers", "1", "--no-progress"]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    whole = tmp_path / "whole.ome.zarr"  # the uninterrupted run, in this process
    tlcore.predict(conv2(), movie, whole, tile=(4, 16, 16), halo=2, overlap=(0, 4, 4),
                   chunks=(4, 16, 16), batch_size=2, num_workers=0)  # fmt: skip
    out = tmp_path / "killed.ome.zarr"
    proc = subprocess.Popen(cli(*common, "--out", str(out)), env=env)
    log = out / RECORD_DIR / "done-0.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    recorded = len(log.read_text().splitlines())
    assert 12 <= recorded < 64, recorded  # killed part-way
    done = subprocess.run(cli(*common, "--out", str(out), "--resume", "--json"), env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    import json

    report = json.loads(done.stdout)
    assert report["tiles_skipped"] > 0 and report["tiles"] + report["tiles_skipped"] == 64
    assert chunk_bytes(out) == chunk_bytes(whole)
    assert len(chunk_bytes(whole)) == 4 * 2 * 16


def _rank(rank: int, init: str, movie: str, out: str, queue: Any) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        report = tlcore.predict(conv2(), movie, out, tile=(4, 16, 16), halo=2,
                                overlap=(0, 0, 4), num_workers=0, batch_size=2)  # fmt: skip
        queue.put(report)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path: Path) -> None:
    movie = write_ome_zarr(tmp_path / "movie.ome.zarr", (3, 2, 4, 48, 48), dtype="uint16")
    one = tmp_path / "one.ome.zarr"
    single = tlcore.predict(conv2(), movie, one, tile=(4, 16, 16), halo=2, overlap=(0, 0, 4),
                            num_workers=0, batch_size=2)  # fmt: skip
    two = tmp_path / "two.ome.zarr"
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    torch.multiprocessing.start_processes(
        _rank, args=(init, str(movie), str(two), queue), nprocs=2, start_method="spawn"
    )
    reports = sorted((queue.get(timeout=10) for _ in range(2)), key=lambda r: r["rank"])
    assert [r["world"] for r in reports] == [2, 2]
    assert sum(r["tiles"] for r in reports) == single["tiles"]  # no tile twice, no padding
    assert all(r["tiles"] > 0 for r in reports)
    logs = [set((two / RECORD_DIR / f"done-{r}.log").read_text().splitlines()) for r in (0, 1)]
    assert not logs[0] & logs[1] and len(logs[0] | logs[1]) == single["units_written"]
    np.testing.assert_array_equal(zarr.open_array(two / "0")[:], zarr.open_array(one / "0")[:])
    assert chunk_bytes(two) == chunk_bytes(one)


@pytest.mark.parametrize("workers", [2])
def test_workers_keep_batch_order(tmp_path: Path, workers: int) -> None:
    movie = write_ome_zarr(tmp_path / "m.ome.zarr", (2, 2, 3, 40, 40), dtype="uint16")
    a = tlcore.predict(conv2(), movie, tmp_path / "a.ome.zarr", tile=(3, 8, 8), halo=2,
                       overlap=2, num_workers=0, batch_size=3)  # fmt: skip
    b = tlcore.predict(conv2(), movie, tmp_path / "b.ome.zarr", tile=(3, 8, 8), halo=2,
                       overlap=2, num_workers=workers, batch_size=3)  # fmt: skip
    assert a["tiles"] == b["tiles"] == 2 * 25
    assert chunk_bytes(tmp_path / "a.ome.zarr") == chunk_bytes(tmp_path / "b.ome.zarr")
