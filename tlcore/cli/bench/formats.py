"""``tlcore bench formats``: what a crop costs in every format, at a realistic size.

One timepoint (2 channels, uint16; ``--size large`` is 64 x 2048 x 2048, 1 GiB; ``medium``
256 MiB; ``small`` 16 MiB) is written in every format tlcore can write, each with the format's
own writer (:mod:`tlcore.cli.bench.formats_data`), into ``--data-dir`` and reused from there.
Per format, on random single-channel ``--crop`` crops (64^3 by default):

* ``open ms``: ``tlcore.open_lazy`` under a fresh name (no cache);
* ``crop ms``: ``tlcore.lazy.compute.compute`` (one region read), a plain dask ``.compute()``
  of the same slice, the native library (pylibCZIrw ROI reads, tifffile's zarr store, zarr),
  and bioio (``BioImage(...).get_image_dask_data``) where its plugin for the format is
  installed;
* ``read x``: bytes the process read from the file per crop (``/proc/self/io``, through
  tlcore's compute) against the crop's bytes and its chunk-aligned bytes;
* ``lazy`` / ``eager MiB per worker``: anonymous PSS of a ``--workers`` DataLoader tree above a
  no-op floor, divided by the workers: ``LoadLazyd -> RandLazyCropd -> ComputeDaskd(float16)``
  (lazy, both channels) and ``LoadLazyd -> ComputeDaskd(float16)`` of the whole timepoint
  (eager);
* ``--rows ...,trace`` (not by default): what holds the lazy memory, traced in one process per
  format (:mod:`tlcore.cli.bench.formats_trace`: peak, Python's share, what glibc keeps).

Speed figures are for this machine and its page cache (files just written are cached); the
ratios between columns are what carries over.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.cli.bench import zyx
from tlcore.cli.bench.formats_data import FORMATS, SIZES, Settings, disk_bytes, make_files
from tlcore.cli.bench.formats_native import bioio_crop, native_crop
from tlcore.cli.bench.formats_trace import TRACE_HEADER, trace, trace_row

__all__ = ["Settings", "format_table", "register", "run"]

Box = tuple[Any, ...]


def _boxes(shape: tuple[int, ...], settings: Settings) -> list[Box]:
    rng = np.random.default_rng(settings.seed)
    size = [min(c, n) for c, n in zip(settings.crop, shape[2:])]
    out: list[Box] = []
    for _ in range(settings.crops):
        c = int(rng.integers(0, shape[1]))
        start = [int(rng.integers(0, n - s + 1)) for n, s in zip(shape[2:], size)]
        out.append((0, c, *(slice(a, a + s) for a, s in zip(start, size))))
    return out


def _aligned_bytes(box: Box, chunks: tuple[int, ...], shape: tuple[int, ...], item: int) -> int:
    """Bytes of the storage chunks ``box`` touches (its chunk-aligned bytes)."""
    total = item
    for k, c, n in zip(box, chunks, shape):
        lo, hi = (k, k + 1) if isinstance(k, int) else (k.start, k.stop)
        total *= min(n, -(-hi // c) * c) - (lo // c) * c
    return total


def _timed(fn: Callable[[Box], Any], boxes: list[Box]) -> float:
    fn(boxes[0])  # warm: imports, handles
    t0 = time.perf_counter()
    for b in boxes:
        fn(b)
    return (time.perf_counter() - t0) / len(boxes) * 1000


def _open_ms(path: Path) -> float:
    import tlcore

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            alias = Path(tmp) / str(i) / path.name
            alias.parent.mkdir()
            alias.symlink_to(path.resolve(), target_is_directory=path.is_dir())
            t0 = time.perf_counter()
            tlcore.open_lazy(alias)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _memory(path: Path, settings: Settings, shape: tuple[int, ...]) -> dict[str, float]:
    """Anonymous PSS per worker above the no-op floor, lazy and eager (MiB)."""
    from monai.transforms import Compose, RandSpatialCropd
    from torch.utils.data import DataLoader

    from tlcore.cli.bench.memory_measure import _Noop, _Samples, _TreePeaks
    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    crop = tuple(min(c, n) for c, n in zip(settings.crop, shape[2:]))
    pipelines = {
        "noop": _Noop((crop[0], crop[1], crop[2])),
        "lazy": Compose([LoadLazyd(keys="raw"), RandLazyCropd(keys="raw", roi_size=crop),
                         ComputeDaskd(keys="raw", dtype="float16")]),
        "eager": Compose([LoadLazyd(keys="raw"),
                          ComputeDaskd(keys="raw", dtype="float16", warn_bytes=None),
                          RandSpatialCropd(keys=["raw"], roi_size=list(crop),
                                           random_size=False)]),
    }  # fmt: skip
    peaks: dict[str, float] = {}
    for name, pipeline in pipelines.items():
        n = settings.memory_samples if name != "eager" else max(settings.workers, 4)
        loader: DataLoader[Any] = DataLoader(
            _Samples(path, n, 1, pipeline),  # type: ignore[arg-type]
            batch_size=1,
            num_workers=settings.workers,
        )
        with _TreePeaks() as tree:
            for _ in loader:
                pass
        peaks[name] = tree.peaks["Pss_Anon:"]
    workers = max(1, settings.workers)
    return {k: max(0.0, (peaks[k] - peaks["noop"]) / workers / 2**20) for k in ("lazy", "eager")}


def measure(fmt: str, path: Path, settings: Settings, log: Callable[[str], None]) -> dict[str, Any]:
    import tlcore
    from tlcore.lazy.compute import compute
    from tlcore.testing import iowatch

    image = tlcore.open_lazy(path)
    data = image.data
    shape = tuple(int(n) for n in data.shape)
    chunks = tuple(int(c[0]) for c in data.chunks)
    item = int(data.dtype.itemsize)
    boxes = _boxes(shape, settings)
    crop_bytes = math.prod(min(c, n) for c, n in zip(settings.crop, shape[2:])) * item
    row: dict[str, Any] = {"format": fmt, "disk_mib": disk_bytes(path) / 2**20,
                           "shape": shape, "chunks": chunks, "crop_bytes": crop_bytes}  # fmt: skip
    want = set(settings.rows)
    if "open" in want:
        row["open_ms"] = _open_ms(path)
    if "crop" in want:
        row["tlcore_ms"] = _timed(lambda b: compute(data[b], "threads"), boxes)
        row["dask_ms"] = _timed(lambda b: data[b].compute(), boxes)
        row["native_ms"] = _try(lambda: _timed(native_crop(fmt, path), boxes), log, fmt, "native")
        row["bioio_ms"] = _try(lambda: _timed(bioio_crop(path), boxes), log, fmt, "bioio")
    if "bytes" in want:
        compute(data[boxes[0]], "threads")
        with iowatch.watch(path) as seen:
            for b in boxes:
                compute(data[b], "threads")
        aligned = statistics.mean(_aligned_bytes(b, chunks, shape, item) for b in boxes)
        read = (seen.bytes_read or 0) / len(boxes)
        row.update(read_mib=read / 2**20, aligned_mib=aligned / 2**20,
                   read_vs_crop=read / crop_bytes, read_vs_aligned=read / aligned)  # fmt: skip
    if "memory" in want:
        mem = _memory(path, settings, shape)
        row.update(lazy_mib_per_worker=mem["lazy"], eager_mib_per_worker=mem["eager"])
    if "trace" in want:
        crop = tuple(min(c, n) for c, n in zip(settings.crop, shape[2:]))
        row["trace"] = trace(path, settings.memory_samples, (crop[0], crop[1], crop[2]))
        log(trace_row(fmt, row["trace"]))
    log(format_row(row))
    return row


def _try(fn: Callable[[], float], log: Callable[[str], None], fmt: str, what: str) -> float | None:
    try:
        return fn()
    except Exception as exc:  # a library missing or unable to read the format: no figure
        log(f"{fmt}: {what} crop not measured ({type(exc).__name__}: {str(exc)[:120]})")
        return None


def run(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write or reuse the files, measure every format; the result as a JSON-ready dict."""
    import torch

    torch.set_num_threads(1)
    files = make_files(settings, log)
    rows = [measure(fmt, path, settings, log) for fmt, path in files.items()]
    c, z, y, x = settings.czyx
    return {"size": settings.size, "timepoint_bytes": c * z * y * x * 2,
            "crop": settings.crop, "workers": settings.workers, "rows": rows}  # fmt: skip


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (
    "| format | disk MiB | open ms | crop ms: tlcore / dask / native / bioio "
    "| MiB read per crop (x crop, x chunk-aligned) | lazy MiB/worker | eager MiB/worker |"
)


def format_row(r: dict[str, Any]) -> str:
    crop = " / ".join(_f(r.get(k), ".1f") for k in ("tlcore_ms", "dask_ms", "native_ms",
                                                      "bioio_ms"))  # fmt: skip
    read = (f"{_f(r.get('read_mib'), '.2f')} ({_f(r.get('read_vs_crop'), '.1f')}x, "
            f"{_f(r.get('read_vs_aligned'), '.2f')}x)")  # fmt: skip
    return (f"| {r['format']} | {r['disk_mib']:.0f} | {_f(r.get('open_ms'), '.1f')} | {crop} "
            f"| {read} | {_f(r.get('lazy_mib_per_worker'), '.1f')} "
            f"| {_f(r.get('eager_mib_per_worker'), '.1f')} |")  # fmt: skip


def format_table(result: dict[str, Any]) -> str:
    lines = [HEADER, "|" + "---|" * 7]
    lines += [format_row(r) for r in result["rows"]]
    traced = [r for r in result["rows"] if "trace" in r]
    if traced:
        lines += ["", "What holds the lazy memory (one process per format, MiB above the no-op):",
                  "", TRACE_HEADER, "|" + "---|" * 7]  # fmt: skip
        lines += [trace_row(r["format"], r["trace"]) for r in traced]
    return "\n".join(lines)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``tlcore bench formats``."""
    p = sub.add_parser(
        "formats",
        help="per format: open, crop time, bytes read per crop, memory per worker",
        parents=[common],
    )
    d = Settings()
    p.add_argument("--size", choices=sorted(SIZES), default=d.size,
                   help="large: 1 GiB per timepoint; medium: 256 MiB; small: 16 MiB")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=d.data_dir, help="where the files are kept")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated")
    p.add_argument("--crop", type=zyx, default=d.crop, help="Z,Y,X (default 64,64,64)")
    p.add_argument("--crops", type=int, default=d.crops, help="random crops per figure")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers")
    p.add_argument("--rows", default=",".join(d.rows), help="open,crop,bytes,memory (and trace)")
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings = Settings(
        size=args.size,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        data_dir=args.data_dir,
        crop=args.crop,
        crops=args.crops,
        workers=args.workers,
        rows=tuple(r.strip() for r in args.rows.split(",") if r.strip()),
    )
    log: Callable[[str], None] = (
        (lambda s: print(s, file=sys.stderr)) if args.json else (lambda s: print(s))
    )
    result = run(settings, log)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(format_table(result))
    return 0
