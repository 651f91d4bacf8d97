"""``tlcore bench memory``: peak memory of a DataLoader tree (parent + workers) training on
random crops of a huge timepoint, eager against lazy, above a no-op floor, in one run.

The data: a synthetic OME-Zarr whose single timepoint is at least 2 GiB uncompressed (uint16,
64 x 4096 x 4096 by default, 32 x 256 x 256 chunks, zstd), written with zarr directly, chunk row
by chunk row, from a few precomputed blocks (dark background, bright "cells"), so it compresses
to a few MB and is written in seconds. A second level (8x smaller in Y and X) serves the
foreground map.

Rows, each a fresh ``DataLoader`` with the same workers, forked from a parent that has imported
torch, MONAI and tlcore:

* ``noop``: the workers open the file (metadata), crop the lazy array and return a zero tensor
  of the crop's size instead of computing it (the floor: imports, open files, no pixel);
* ``lazy``: the guide's pattern, ``BioIOImageLoaderd(lazy_load=True, dtype="float16")`` ->
  MONAI ``RandSpatialCropd`` -> ``ComputeDaskd(dtype="float16")``;
* ``lazy-aligned``: ``LoadLazyd(chunk_cache=0)`` (whole chunks, one at a time, counted) ->
  ``RandLazyCropd(align_to_chunks=True)`` -> ``ComputeDaskd``;
* ``eager``: the guide's eager pattern as users run it, ``BioIOImageLoaderd(lazy_load=False,
  dtype="float16")`` -> ``RandSpatialCropd`` -> ``ComputeDaskd``: every sample reads its whole
  timepoint. With a float16 ``dtype`` MONAI does not widen the timepoint (it would widen a
  uint16 one to int32 first: 3x the memory).

Peak RSS, PSS (shared pages counted once) and anonymous PSS of the whole tree are sampled
every 20 ms from ``/proc/<pid>/smaps_rollup``. ``ratio_above_noop`` is (eager PSS - noop PSS) /
(lazy PSS - noop PSS). On a shared machine total PSS moves with unrelated processes that map
the same libraries (each process's share of torch's pages changes), so the per-worker figures
use anonymous PSS, which only this tree shares; both are reported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlcore.cli.bench import zyx
from tlcore.cli.bench.memory_data import Settings, make_store
from tlcore.cli.bench.memory_measure import _available, _foreground_cost, _measure, _pipelines

__all__ = ["Settings", "make_store", "register", "run"]


def run(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every row; returns the JSON report."""
    import dask

    dask.config.set(scheduler="synchronous")  # the parent never starts dask threads
    t0 = time.perf_counter()
    path = make_store(settings)
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    log(f"data: {path} ({disk / 2**20:.1f} MiB on disk, ready in {time.perf_counter() - t0:.1f} s)")
    z, y, x = settings.shape
    timepoint_bytes = z * y * x * 2
    crop_bytes = math.prod(settings.crop) * 2
    chunk_bytes = math.prod(settings.chunks) * 2
    aligned_chunks = math.prod(-(-c // k) for c, k in zip(settings.crop, settings.chunks))
    aligned_bytes = aligned_chunks * chunk_bytes
    need = settings.workers * timepoint_bytes + 2 * 2**30
    free = _available()
    eager = "eager" in settings.rows
    if eager and free is not None and free < need and not settings.force:
        raise SystemExit(
            f"tlcore bench memory: the eager row needs about {need / 2**30:.1f} GiB "
            f"({settings.workers} workers x a {timepoint_bytes / 2**30:.1f} GiB timepoint), "
            f"{free / 2**30:.1f} GiB is available; use fewer --workers or a smaller --shape, "
            "or --force"
        )
    import tlcore

    # Import the reader and its codecs in the parent, as a training script would have: they
    # are then shared by every row's workers and belong to the floor, not to a row.
    tlcore.open_lazy(path).data[0, 0, :1, :1, :1].compute(scheduler="synchronous")
    pipelines = _pipelines(settings)
    rows = {}
    for name in ("noop", *(r for r in ("lazy", "lazy-aligned", "eager") if r in settings.rows)):
        n = settings.eager_samples if name == "eager" else settings.lazy_samples
        rows[name] = row = _measure(path, settings, name, pipelines[name], n)
        rss, pss = row["peak_rss_bytes"] / 2**20, row["peak_pss_bytes"] / 2**20
        anon = row["peak_pss_anon_bytes"] / 2**20
        log(
            f"  {name:13s} {row['samples']:4d} samples in {row['seconds']:6.1f} s: peak RSS "
            f"{rss:8.0f} MiB, PSS {pss:8.0f} MiB, anonymous PSS {anon:8.0f} MiB"
        )
    fg = _foreground_cost(path, settings)
    missing = {"peak_pss_bytes": None, "peak_rss_bytes": None, "peak_pss_anon_bytes": None}
    for name in ("lazy", "lazy-aligned", "eager"):
        rows.setdefault(name, missing)
    floor = rows["noop"]["peak_pss_bytes"]
    above_total = {k: (rows[k]["peak_pss_bytes"] or floor) - floor for k in rows}
    anon_floor = rows["noop"]["peak_pss_anon_bytes"]
    above = {k: (rows[k]["peak_pss_anon_bytes"] or anon_floor) - anon_floor for k in rows}
    w = settings.workers
    report: dict[str, Any] = {
        "timepoint_bytes": timepoint_bytes,
        "crop_bytes": crop_bytes,
        "workers": w,
        "noop_peak_pss_bytes": floor,
        "eager_peak_pss_bytes": rows["eager"]["peak_pss_bytes"],
        "lazy_peak_pss_bytes": rows["lazy"]["peak_pss_bytes"],
        "eager_peak_rss_bytes": rows["eager"]["peak_rss_bytes"],
        "lazy_peak_rss_bytes": rows["lazy"]["peak_rss_bytes"],
        "ratio_above_noop": above_total["eager"] / max(above_total["lazy"], 1),
        "noop_peak_rss_bytes": rows["noop"]["peak_rss_bytes"],
        "lazy_aligned_peak_pss_bytes": rows["lazy-aligned"]["peak_pss_bytes"],
        "lazy_aligned_peak_rss_bytes": rows["lazy-aligned"]["peak_rss_bytes"],
        "ratio_above_noop_aligned": above_total["eager"] / max(above_total["lazy-aligned"], 1),
        "noop_peak_pss_anon_bytes": anon_floor,
        "eager_peak_pss_anon_bytes": rows["eager"]["peak_pss_anon_bytes"],
        "lazy_peak_pss_anon_bytes": rows["lazy"]["peak_pss_anon_bytes"],
        "lazy_aligned_peak_pss_anon_bytes": rows["lazy-aligned"]["peak_pss_anon_bytes"],
        "ratio_above_noop_anon": above["eager"] / max(above["lazy"], 1),
        "aligned_crop_chunk_bytes": aligned_bytes,
        "lazy_extra_per_worker_bytes": above["lazy"] / w,
        "lazy_aligned_extra_per_worker_bytes": above["lazy-aligned"] / w,
        "eager_extra_per_worker_bytes": above["eager"] / w,
        "disk_bytes": disk,
        **fg,
    }
    log(
        f"\ntimepoint {timepoint_bytes / 2**30:.2f} GiB, crop {settings.crop} = "
        f"{crop_bytes / 2**20:.2f} MiB ({aligned_chunks} chunks = {aligned_bytes / 2**20:.0f} "
        f"MiB when chunk-aligned), {w} workers; anonymous PSS above the no-op floor "
        f"({anon_floor / 2**20:.0f} MiB; total PSS floor {floor / 2**20:.0f} MiB):"
    )
    for k in ("eager", "lazy", "lazy-aligned"):
        per = above[k] / w
        log(
            f"  {k:13s} {above[k] / 2**20:8.1f} MiB in all, {per / 2**20:7.1f} MiB per worker "
            f"({per / aligned_bytes:5.2f}x the chunk-aligned crop bytes)"
        )
    log(
        f"  eager / lazy above the floor, total PSS: {report['ratio_above_noop']:.1f}x "
        f"(aligned: {report['ratio_above_noop_aligned']:.1f}x), anonymous PSS: "
        f"{report['ratio_above_noop_anon']:.1f}x; lazy tree PSS "
        f"{report['lazy_peak_pss_bytes'] / 2**30:.2f} GiB"
    )
    log(
        f"  foreground map: first crop of a timepoint {fg['foreground_first_crop_ms']:.0f} ms "
        f"(map from level 1), later crops {fg['foreground_crop_ms']:.0f} ms against "
        f"{fg['uniform_crop_ms']:.0f} ms uniform"
    )
    return report


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``tlcore bench memory``."""
    p = sub.add_parser(
        "memory",
        help="peak memory of a DataLoader tree: eager against lazy against a no-op floor",
        parents=[common],
    )
    d = Settings()
    p.add_argument("--shape", type=zyx, default=d.shape, help="Z,Y,X of each timepoint")
    p.add_argument("--chunks", type=zyx, default=d.chunks, help="Z,Y,X storage chunks")
    p.add_argument("--crop", type=zyx, default=d.crop, help="Z,Y,X of each crop")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--timepoints", type=int, default=d.timepoints)
    p.add_argument("--lazy-samples", type=int, default=d.lazy_samples)
    p.add_argument("--eager-samples", type=int, default=d.eager_samples)
    p.add_argument("--data-dir", type=Path, default=d.data_dir, help="where the data is kept")
    p.add_argument("--force", action="store_true", help="run eager even when memory looks short")
    p.add_argument("--rows", default="lazy,lazy-aligned,eager", help="rows besides noop")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings = Settings(
        shape=args.shape,
        chunks=args.chunks,
        crop=args.crop,
        workers=args.workers,
        timepoints=args.timepoints,
        lazy_samples=args.lazy_samples,
        eager_samples=args.eager_samples,
        data_dir=args.data_dir,
        force=args.force,
        rows=("noop", *(r.strip() for r in args.rows.split(",") if r.strip())),
    )
    log: Callable[[str], None] = (lambda s: print(s, file=sys.stderr)) if args.json else print
    report = run(settings, log)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from tlcore.cli import main

    sys.exit(main(["bench", "memory", *sys.argv[1:]]))
