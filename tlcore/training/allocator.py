"""glibc's allocator set up for a DataLoader worker: the large buffers of one sample are reused
by the next instead of being handed back to the system and faulted in again.

A sample allocates several buffers of megabytes: each decoded chunk (4 MiB for a 32 x 256 x 256
uint16 chunk), each object fetched from S3, the crop and its float copy, the batch. glibc serves
a block above its mmap threshold (128 KiB at first, raised as large blocks are freed, up to
32 MiB) with a fresh ``mmap`` and unmaps it when it is freed, and gives free memory at the top of
a heap back once it exceeds its trim threshold: either way the next sample's buffer is new
memory, and every 4 KiB page of it costs a page fault and a zeroing in the kernel. Which of the
two happens, and when, depends on the order of earlier frees, so workers differ from run to run.

Measured with 4 workers on 2 cores, random 32 x 128 x 128 crops of a zstd OME-Zarr on S3
(moto on loopback), in alternating runs: 1,270-1,440 page faults per crop and 23-26 ms of worker
CPU per crop with glibc's defaults, 840-870 (600 of them the crop's shared-memory pages that
carry it to the main process) and 21-24 ms tuned; a worker stays at its peak memory between
samples instead of dropping below it (docs/performance.md).

Only processes tlcore sets up as DataLoader workers (:func:`tlcore.training.workers.worker_init`)
are tuned: never the user's main process. ``TLCORE_WORKER_MALLOC=0`` leaves workers at glibc's
defaults, and so does any allocator setting of the user's (``GLIBC_TUNABLES`` naming
``glibc.malloc``, or a ``MALLOC_*`` variable).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "WORKER_MALLOC_ENV", "keep_large_buffers"]

WORKER_MALLOC_ENV = "TLCORE_WORKER_MALLOC"

#: Blocks up to this size come from the heap, and are reused there once freed. glibc's largest
#: allowed value on 64-bit systems (half its 64 MiB heap size).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory at the top of a heap kept for the next sample rather than returned: two of the
#: largest heap blocks.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _user_chose() -> bool:
    """Whether the environment already sets glibc's allocator (the user's choice wins)."""
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return True
    return any(name.startswith("MALLOC_") for name in os.environ)


def keep_large_buffers() -> bool:
    """Set this process's glibc allocator to keep large freed buffers for reuse (see the module
    docstring). Returns whether it was set: False off glibc (macOS, musl, Windows), with
    ``TLCORE_WORKER_MALLOC=0``, or when the environment already sets the allocator. Call it
    in a worker process only."""
    flag = os.environ.get(WORKER_MALLOC_ENV, "1").strip().lower()
    if flag in ("0", "false", "no", "off") or _user_chose():
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting either one also stops glibc's own adjustments.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
