"""``tlcore bench throughput``: crops per second through tlcore against reading the same crops
straight from zarr, on one generated OME-Zarr, in one run.

Rows (each the same list of random crops unless it says otherwise):

* ``direct``: ``zarr.Array[...]`` of each crop, no dask, in a DataLoader with the same number
  of workers (the practical floor of zarr-python);
* ``tlcore``: the datamodule's DataLoader: ``LoadLazyd`` -> crop -> ``ComputeDaskd``, with the
  default decoder (tlcore's own, :mod:`tlcore.decoders.zarrfast`);
* ``tlcore-zarr``: the same with ``TLCORE_DECODER=zarr``: zarr decodes, as in ``direct``, so
  the difference to ``direct`` is what tlcore's path costs;
* ``tlcore-dask``: the same with the one-region fast path off (``TLCORE_DIRECT_READ=0``),
  zarr decoding: what tlcore did before;
* ``eager``: read the whole timepoint, then crop (the old way; fewer crops, it is slow);
* ``tensorstore``, ``zarrs``: direct reads with those decoders, when installed, in their safe
  start method (spawn), and in one (spawned) process; ``tlcore+<decoder>``: tlcore with
  ``TLCORE_DECODER=<decoder>``; ``direct-spawn``, ``tlcore-spawn``: their baselines;
* ``chunks-<n>``: per-crop cost of tlcore over direct on a metadata-only array of n chunks;
* ``aligned+cache``: chunk-aligned random crops through the decoded-chunk cache (different
  sampling, same crop size).

Crops per second are measured after the first two batches per worker have arrived (worker
start-up and the prefetched batches are no per-crop cost). Decoded MB/s and read
amplification count the storage chunks each crop touches (the whole timepoint for
``eager``); peak memory is the process tree's (:class:`tlcore.memory.TreeMemory`), workers
included.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlcore.cli.bench import zyx
from tlcore.cli.bench.throughput_data import DECODERS, Row, Settings, make_dataset, random_crops
from tlcore.cli.bench.throughput_report import _format_row, _jsonable, _summary, format_table
from tlcore.cli.bench.throughput_rows import (
    _aligned_row,
    _chunk_count_rows,
    _decoder_usable,
    _direct_loader,
    _env,
    _in_spawned_process,
    _measure,
    _one_process_decoder_rows,
    _tlcore_loader,
)

__all__ = ["Row", "Settings", "format_table", "make_dataset", "random_crops", "register", "run"]


def run(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every requested row on one dataset; the result as a JSON-ready dict."""
    import torch

    torch.set_num_threads(1)
    log(f"dataset: writing or reusing it under {settings.data_dir} ...")
    path = make_dataset(settings)
    crops = random_crops(settings, settings.crops)
    rows: list[Row] = []
    counts = sorted({0, settings.workers} if settings.one_process else {settings.workers})
    want = set(settings.rows)

    def add(row: Row) -> None:
        rows.append(row)
        log(_format_row(row))

    # direct and tlcore alternate, best of ``repeat``: a shared machine's load moves both alike.
    best: dict[tuple[str, int], Row] = {}
    for _ in range(max(1, settings.repeat)):
        for w in counts:
            found = []
            if "direct" in want:
                loader = _direct_loader(path, crops, settings, w, "zarr", None)
                found.append(_measure("direct", loader, crops, settings, w))
            if "tlcore" in want:
                with _env(TLCORE_DECODER="default"):
                    loader = _tlcore_loader(path, crops, settings, w)
                    note = "the default: tlcore's own decoder (tlcore.decoders.zarrfast)"
                    found.append(_measure("tlcore", loader, crops, settings, w, note=note))
            if "tlcore-zarr" in want:
                with _env(TLCORE_DECODER="zarr"):
                    loader = _tlcore_loader(path, crops, settings, w)
                    note = "TLCORE_DECODER=zarr: zarr decodes, as direct does (tlcore's path cost)"
                    found.append(_measure("tlcore-zarr", loader, crops, settings, w, note=note))
            if "tlcore-dask" in want:
                with _env(TLCORE_DIRECT_READ="0", TLCORE_DECODER="zarr"):
                    loader = _tlcore_loader(path, crops, settings, w)
                    note = "fast path off, zarr decoding: one dask task per chunk (before)"
                    found.append(_measure("tlcore-dask", loader, crops, settings, w, note=note))
            for row in found:
                log(_format_row(row))
                key = (row.name, row.workers)
                if key not in best or row.crops_per_s > best[key].crops_per_s:
                    best[key] = row
    rows.extend(best[k] for k in sorted(best, key=lambda k: (k[1], k[0])))
    w = settings.workers
    if "eager" in want:
        few = crops[: settings.eager_crops]
        whole = math.prod(settings.shape) * 2
        add(_measure("eager", _direct_loader(path, few, settings, w, "eager", None), few,
                     settings, w, decoded_per_crop=lambda c: whole,
                     note=f"whole timepoint, then crop; first {len(few)} crops"))  # fmt: skip
    if "chunks" in want:
        for n_chunks in settings.chunk_counts:
            rows.extend(_chunk_count_rows(settings, n_chunks, log))
    if "aligned" in want:
        aligned = _aligned_row(path, settings, log)
        if aligned is not None:
            add(aligned)
    if "decoders" in want:
        # Last, and only in spawned processes: neither library may run in this process before
        # a fork (the rows above fork, and so may a later run in this process).
        w = max(1, settings.workers)
        usable = [name for name in DECODERS if _decoder_usable(name)]
        for name in sorted(set(DECODERS) - set(usable)):
            log(f"{name}: not installed, rows skipped (pip install {name}, or tlcore[fast])")
        if usable and settings.one_process:
            for row in _in_spawned_process(
                _one_process_decoder_rows, path, crops, settings, usable
            ):
                add(row)
        for name in usable:
            loaders = {
                "direct-spawn": _direct_loader(path, crops, settings, w, "zarr", "spawn"),
                "tlcore-spawn": _tlcore_loader(path, crops, settings, w, "spawn"),
                name: _direct_loader(path, crops, settings, w, name, "spawn"),
                f"tlcore+{name}": _tlcore_loader(path, crops, settings, w, "spawn"),
            }
            if name != usable[0]:
                del loaders["direct-spawn"]  # spawned direct and tlcore rows: once for all
                del loaders["tlcore-spawn"]
            for label, make in loaders.items():
                decoder = name if label.startswith("tlcore+") else "default"
                with _env(TLCORE_DECODER=decoder):
                    note = {
                        "direct-spawn": "direct zarr reads, spawned workers",
                        "tlcore-spawn": "tlcore's own decoder, spawned workers",
                        name: f"direct {name} reads",
                    }.get(label, f"TLCORE_DECODER={name}")
                    add(_measure(label, make, crops, settings, w, start_method="spawn",
                                 note=note))  # fmt: skip
    return _summary(settings, path, rows)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``tlcore bench throughput``."""
    p = sub.add_parser(
        "throughput",
        help="crops per second: tlcore against direct zarr, the eager way and tensorstore",
        parents=[common],
    )
    d = Settings()
    p.add_argument("--crop", type=zyx, default=d.crop, help="Z,Y,X (default 32,128,128)")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers")
    p.add_argument("--crops", type=int, default=d.crops, help="random crops per row")
    p.add_argument("--timepoints", type=int, default=d.timepoints)
    p.add_argument("--shape", type=zyx, default=d.shape, help="Z,Y,X of each timepoint")
    p.add_argument("--chunks", type=zyx, default=d.chunks, help="Z,Y,X storage chunks")
    p.add_argument("--codec", choices=("zstd", "blosc"), default=d.codec)
    p.add_argument("--data-dir", type=Path, default=d.data_dir, help="where the data is kept")
    p.add_argument("--rows", default=",".join(d.rows), help="which rows, comma-separated")
    p.add_argument("--chunk-counts", default="300000", help="chunk counts of the scaling rows")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--json", action="store_true", help="print one JSON object, nothing else")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    settings = Settings(
        crop=args.crop,
        workers=args.workers,
        crops=args.crops,
        timepoints=args.timepoints,
        shape=args.shape,
        chunks=args.chunks,
        codec=args.codec,
        seed=args.seed,
        data_dir=args.data_dir,
        rows=tuple(r.strip() for r in args.rows.split(",") if r.strip()),
        chunk_counts=tuple(int(n) for n in args.chunk_counts.split(",") if n.strip()),
    )
    log: Callable[[str], None] = (
        (lambda s: print(s, file=sys.stderr)) if args.json else (lambda s: print(s))
    )
    result = run(settings, log)
    if args.json:
        print(json.dumps(result, default=_jsonable))
    else:
        ratio = result["ratio_tlcore_direct"]
        print(f"tlcore / direct at {settings.workers} workers: {ratio}; one process: "
              f"{result['ratio_tlcore_direct_one_process']}")  # fmt: skip
    return 0
