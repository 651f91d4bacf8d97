"""glibc's allocator in DataLoader workers (:mod:`tlcore.training.allocator`): large buffers
come from the heap and are reused, in workers only, unless the user says otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from monai.transforms import Compose, Transform

import tlcore
from tlcore.training import allocator
from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="tunes glibc's allocator only",
)

# Whether an 8 MiB allocation got a mapping of its own (mallinfo2's hblks), in this process.
_PROBE = """
import ctypes, numpy as np
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def mapped_blocks_for_8_mib():
    before = libc.mallinfo2().hblks
    block = np.ones(8 * 2**20, np.uint8)
    return libc.mallinfo2().hblks - before
"""


def _probe(code: str, **env: str) -> list[str]:
    run_env = {k: v for k, v in os.environ.items() if k != allocator.WORKER_MALLOC_ENV}
    run_env.update(env)
    done = subprocess.run([sys.executable, "-c", _PROBE + code], env=run_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_large_buffers_come_from_the_heap_once_set() -> None:
    tuned = "from tlcore.training import allocator\n" \
            "print(allocator.keep_large_buffers(), mapped_blocks_for_8_mib())"  # fmt: skip
    assert _probe(tuned) == ["True", "0"]
    # glibc's default, in a fresh process: a block of its own, unmapped when freed.
    assert _probe("print(mapped_blocks_for_8_mib())") == ["1"]


@pytest.mark.parametrize(
    "env",
    [
        {allocator.WORKER_MALLOC_ENV: "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
        {"MALLOC_ARENA_MAX": "2"},
    ],
)
def test_the_users_settings_win(env: dict[str, str]) -> None:
    code = "from tlcore.training import allocator\n" \
           "print(allocator.keep_large_buffers())"  # fmt: skip
    assert _probe(code, **env)[0] == "False"


class _MappedBlocks(Transform):
    """Records whether an 8 MiB buffer got a mapping of its own in the process it runs in."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        namespace: dict[str, Any] = {}
        exec(_PROBE, namespace)  # the same probe as in the subprocesses above
        return {**data, "mapped": namespace["mapped_blocks_for_8_mib"]()}


def test_worker_init_tunes_a_worker(
    synthetic_store: Callable[..., Path],
) -> None:
    store = synthetic_store("a.ome.zarr", shape=(2, 1, 2, 32, 32), chunks=(1, 1, 2, 16, 16))
    pipeline = Compose([
        LoadLazyd(keys="raw", spatial_dims=3),
        RandLazyCropd(keys="raw", roi_size=(2, 16, 16)),
        ComputeDaskd(keys="raw"),
        _MappedBlocks(),
    ])  # fmt: skip

    def mapped(workers: int) -> list[int]:
        dm = tlcore.RandomTimelapseDatamodule(
            pd.DataFrame({"path": [str(store)], "split": ["train"]}), transforms=pipeline,
            samples_per_epoch={"train": 2}, batch_size=1, num_workers=workers,
            multiprocessing_context="spawn" if workers else None,
        )  # fmt: skip
        dm.setup("fit")
        return [int(b["mapped"]) for b in dm.train_dataloader()]

    # A spawned worker is a fresh process, like the probe above: only worker_init's setting
    # keeps the buffer off a mapping of its own.
    assert mapped(1) == [0, 0]
