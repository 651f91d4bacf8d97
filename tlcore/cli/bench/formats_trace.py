"""``tlcore bench formats --rows trace``: what holds a worker's lazy memory, per format.

One fresh process per format stands in for a DataLoader worker: it imports what a worker
imports, runs the no-op pipeline (open, crop the lazy array, no pixel) ``n`` times, then the
lazy pipeline (``LoadLazyd -> RandLazyCropd -> ComputeDaskd(float16)``, a crop of both
channels) ``n`` times, and reports, above the no-op:

* ``peak``: the highest anonymous RSS during the lazy samples (sampled every 5 ms);
* ``python peak``: tracemalloc's peak, the buffers Python and numpy allocated (decoded chunks,
  bytes read, the output): what tlcore and the Python libraries hold at once. Native libraries
  (libCZI, c-blosc inside its own buffers) are not traced: ``peak`` minus this is theirs;
* ``kept``: anonymous RSS after the samples, and ``kept after trim`` after glibc's
  ``malloc_trim(0)``: the difference is memory freed by the program that glibc keeps in its
  free lists (one arena per thread) for the next allocation, not held by any object;
* ``glibc free``: that free-list memory as glibc counts it (``mallinfo2``);
* ``threads``: threads started by the lazy samples (decoder pools, zarr's event loop).

Run ``python -m tlcore.cli.bench.formats_trace PATH [N]`` for one file (prints JSON).
"""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

__all__ = ["TRACE_HEADER", "trace", "trace_row"]

TRACE_HEADER = (
    "| format | peak MiB | python peak MiB | kept MiB | kept after trim MiB | glibc free MiB "
    "| threads |"
)


def trace(path: Path, n: int = 16, crop: tuple[int, int, int] = (64, 64, 64)) -> dict[str, Any]:
    """The figures above for ``path``, measured in a fresh Python process."""
    code = [sys.executable, "-m", "tlcore.cli.bench.formats_trace", str(path), str(n),
            ",".join(map(str, crop))]  # fmt: skip
    done = subprocess.run(code, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"tracing {path} failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def trace_row(fmt: str, r: dict[str, Any]) -> str:
    return (f"| {fmt} | {r['peak_mib']:.1f} | {r['python_peak_mib']:.1f} | {r['kept_mib']:.1f} "
            f"| {r['kept_after_trim_mib']:.1f} | {_f(r.get('glibc_free_mib'))} "
            f"| {r['threads']} |")  # fmt: skip


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return libc
    except (OSError, AttributeError):  # not glibc (or older than 2.33)
        return None


def _anon() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _measure(path: Path, n: int, crop: tuple[int, int, int]) -> dict[str, Any]:
    import torch
    from monai.transforms import Compose

    from tlcore.cli.bench.memory_measure import _Noop, _Samples
    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    torch.set_num_threads(1)
    libc = _libc()
    noop = _Samples(path, n, 1, _Noop(crop))
    lazy = _Samples(path, n, 1, Compose([
        LoadLazyd(keys="raw"), RandLazyCropd(keys="raw", roi_size=crop),
        ComputeDaskd(keys="raw", dtype="float16")]))  # fmt: skip
    for i in range(n):
        noop[i]
    gc.collect()
    base, threads = _anon(), threading.active_count()
    free0 = libc.mallinfo2().fordblks if libc is not None else None
    peak, stop = [base], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _anon())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    try:
        for i in range(n):
            lazy[i]
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
        sampler.join()
    gc.collect()
    kept = _anon()
    free1 = libc.mallinfo2().fordblks if libc is not None else None
    if libc is not None:
        libc.malloc_trim(0)
    trimmed = _anon()
    mib = 2**20
    return {
        "peak_mib": (peak[0] - base) / mib,
        "python_peak_mib": python_peak / mib,
        "kept_mib": (kept - base) / mib,
        "kept_after_trim_mib": (trimmed - base) / mib,
        "glibc_free_mib": None if free0 is None or free1 is None else (free1 - free0) / mib,
        "threads": threading.active_count() - threads,
    }


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    size = tuple(int(v) for v in sys.argv[3].split(",")) if len(sys.argv) > 3 else (64, 64, 64)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    print(json.dumps(_measure(Path(sys.argv[1]), count, (size[0], size[1], size[2]))))
