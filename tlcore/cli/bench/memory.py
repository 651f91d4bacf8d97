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
import gc
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcore import vocabulary
from tlcore.cli.bench import zyx
from tlcore.progress import Bar, track

__all__ = ["Settings", "make_store", "register", "run"]


@dataclass
class Settings:
    """Z, Y, X shapes; the data is ``timepoints`` x 1 x Z x Y x X uint16."""

    shape: tuple[int, int, int] = (64, 4096, 4096)
    chunks: tuple[int, int, int] = (32, 256, 256)
    crop: tuple[int, int, int] = (64, 64, 64)
    timepoints: int = 2
    workers: int = 4
    lazy_samples: int = 64
    eager_samples: int = 8
    seed: int = 0
    force: bool = False
    rows: tuple[str, ...] = ("noop", "lazy", "lazy-aligned", "eager")
    data_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "tlcore-bench")


def make_store(settings: Settings) -> Path:
    """Write (once) the benchmark's OME-Zarr and return its path."""
    import zarr
    from zarr.codecs import ZstdCodec

    z, y, x = settings.shape
    cz, cy, cx = settings.chunks
    name = f"memory-tp{settings.timepoints}-{z}x{y}x{x}-c{cz}x{cy}x{cx}.ome.zarr"
    path = settings.data_dir / name
    if (path / ".complete").exists():
        return path
    if path.exists():
        import shutil

        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    f = 8  # level 1: 8x smaller in Y and X
    arrays = [
        root.create_array(
            str(level),
            shape=(settings.timepoints, 1, z, -(-y // s), -(-x // s)),
            chunks=(1, 1, cz, min(cy, -(-y // s)), min(cx, -(-x // s))),
            dtype="uint16",
            compressors=[ZstdCodec(level=1)],
            dimension_names=list("tczyx"),
        )
        for level, s in ((0, 1), (1, f))
    ]
    root.attrs["ome"] = _ome_attrs(f)
    # Two blocks: background, and a bright ellipsoid "cell" with a soft edge.
    zz, yy, xx = np.ogrid[:cz, :cy, :cx]
    r = ((zz - cz / 2) / (cz / 2.5)) ** 2 + ((yy - cy / 2) / (cy / 3)) ** 2
    r = r + ((xx - cx / 2) / (cx / 3)) ** 2
    cell = (100 + 1900 * np.exp(-2 * r)).astype(np.uint16)
    background = np.full((cz, cy, cx), 100, np.uint16)
    rng = np.random.default_rng(settings.seed)
    rows = settings.timepoints * -(-z // cz) * -(-y // cy)
    with Bar("writing the data", rows, unit="chunk rows") as bar:
        _write_rows(arrays, settings, f, cell, background, rng, bar)
    (path / ".complete").touch()
    return path


def _write_rows(
    arrays: list[Any],
    settings: Settings,
    f: int,
    cell: np.ndarray[Any, Any],
    background: np.ndarray[Any, Any],
    rng: np.random.Generator,
    bar: Bar,
) -> None:
    z, y, x = settings.shape
    cz, cy, cx = settings.chunks
    for t in range(settings.timepoints):
        for z0 in range(0, z, cz):
            for y0 in range(0, y, cy):
                row = np.empty((min(cz, z - z0), min(cy, y - y0), x), np.uint16)
                for x0 in range(0, x, cx):
                    block = cell if rng.random() < 0.15 else background
                    w = min(cx, x - x0)
                    row[:, :, x0 : x0 + w] = block[: row.shape[0], : row.shape[1], :w]
                arrays[0][t, 0, z0 : z0 + row.shape[0], y0 : y0 + row.shape[1]] = row
                arrays[1][t, 0, z0 : z0 + row.shape[0], y0 // f : (y0 + row.shape[1]) // f] = row[
                    :, ::f, ::f
                ]
                bar.update()


def _ome_attrs(f: int) -> dict[str, Any]:
    space = [{"name": d, "type": "space", "unit": "micrometer"} for d in "zyx"]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, *space]
    datasets = [
        {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        for level, scale in ((0, [1.0, 1.0, 1.0, 0.1, 0.1]), (1, [1.0, 1.0, 1.0, 0.1 * f, 0.1 * f]))
    ]
    return {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}


class _Samples:
    """A torch-style dataset: sample i reads timepoint i % T through ``pipeline``."""

    def __init__(self, path: Path, n: int, timepoints: int, pipeline: Callable[..., Any]) -> None:
        self.path, self.n, self.timepoints, self.pipeline = str(path), n, timepoints, pipeline

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        set_state = getattr(self.pipeline, "set_random_state", None)
        if set_state is not None:
            set_state(seed=i)
        out = self.pipeline(
            {vocabulary.PATH: self.path, vocabulary.TIMEPOINTS: i % self.timepoints}
        )
        return out["raw"].as_tensor() if hasattr(out["raw"], "as_tensor") else out["raw"]


class _Noop:
    """The lazy pattern's Python work without a pixel: open (metadata), crop the lazy array,
    return zeros instead of computing. The floor."""

    def __init__(self, crop: tuple[int, int, int]) -> None:
        from monai.transforms import RandSpatialCropd

        from tlcore.transforms import LoadLazyd

        self.crop = crop
        self.load = LoadLazyd(keys="raw")
        self.cut = RandSpatialCropd(keys=["raw"], roi_size=list(crop), random_size=False)

    def __call__(self, d: dict[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        out = self.cut(self.load(d))
        return {**out, "raw": torch.zeros((1, *self.crop), dtype=torch.float16)}


def _pipelines(settings: Settings) -> dict[str, Any]:
    from monai.transforms import Compose, RandSpatialCropd

    from tlcore.transforms import BioIOImageLoaderd, ComputeDaskd, LoadLazyd, RandLazyCropd

    crop = list(settings.crop)
    return {
        "noop": _Noop(settings.crop),
        "lazy": Compose([
            BioIOImageLoaderd(path_key=vocabulary.PATH, out_key="raw", dask_load=True,
                              lazy_load=True, dtype="float16"),
            RandSpatialCropd(keys=["raw"], roi_size=crop, random_size=False),
            ComputeDaskd(keys=["raw"], dtype="float16"),
        ]),
        "lazy-aligned": Compose([
            LoadLazyd(keys="raw", chunk_cache=0),
            RandLazyCropd(keys="raw", roi_size=settings.crop, align_to_chunks=True),
            ComputeDaskd(keys="raw", dtype="float16"),
        ]),
        "eager": Compose([
            BioIOImageLoaderd(path_key=vocabulary.PATH, out_key="raw", dask_load=True,
                              lazy_load=False, dtype="float16"),
            RandSpatialCropd(keys=["raw"], roi_size=crop, random_size=False),
            ComputeDaskd(keys=["raw"], dtype="float16", warn_bytes=None),
        ]),
    }  # fmt: skip


class _TreePeaks:
    """Peak RSS, PSS and anonymous PSS of this process tree, sampled on a thread.

    Anonymous PSS (``Pss_Anon``) is shared only within the tree (copy-on-write after fork), so
    it does not move when unrelated processes on the machine map the same libraries, which
    changes every tree process's share of torch's file pages, hence its PSS."""

    fields = ("Rss:", "Pss:", "Pss_Anon:")

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.peaks = dict.fromkeys(self.fields, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        from tlcore.memory import tree

        totals = dict.fromkeys(self.fields, 0)
        for pid in tree():
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                head = line.split(maxsplit=1)[0] if line else ""
                if head in totals:
                    totals[head] += int(line.split()[1]) * 1024
        for k, v in totals.items():
            self.peaks[k] = max(self.peaks[k], v)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> _TreePeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _measure(path: Path, settings: Settings, name: str, pipeline: Any, n: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    dataset = _Samples(path, n, settings.timepoints, pipeline)
    loader: DataLoader[Any] = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=1,
        num_workers=settings.workers,
        multiprocessing_context="fork",
        collate_fn=lambda batch: batch[0],
    )
    _wait_for_children()  # the previous row's workers must not count in this one
    # A garbage collection in a forked worker writes to every object it inherited, which
    # copies the parent's whole heap (~100 MiB with torch and MONAI) into that worker, at a
    # moment that depends on how much the row allocates. Frozen objects are never scanned:
    # the rows then differ by what they do, not by when a collection happened.
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    with _TreePeaks() as memory:
        count = sum(1 for _ in track(loader, f"  {name}", total=n, unit="samples"))
    return {
        "row": name,
        "samples": count,
        "seconds": time.perf_counter() - t0,
        "peak_rss_bytes": memory.peaks["Rss:"],
        "peak_pss_bytes": memory.peaks["Pss:"],
        "peak_pss_anon_bytes": memory.peaks["Pss_Anon:"],
    }


def _wait_for_children(timeout: float = 60.0) -> None:
    """Wait until this process has no child processes left (exiting DataLoader workers)."""
    from tlcore.memory import tree

    deadline = time.monotonic() + timeout
    while len(tree()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)


def _available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _foreground_cost(path: Path, settings: Settings) -> dict[str, float]:
    """Milliseconds for the first foreground-weighted crop of a timepoint (which computes its
    coarse map; measured on a timepoint after the first, so opening the file and the coarse
    level is not counted) and for later crops of it, against uniform crops, in this
    process."""
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, Foreground, LoadLazyd, RandLazyCropd, foreground

    foreground.clear()
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandLazyCropd(keys="raw", roi_size=settings.crop, foreground=Foreground(threshold=1000)),
        ComputeDaskd(keys="raw", dtype="float16"),
    ])  # fmt: skip
    plain = Compose([
        LoadLazyd(keys="raw"),
        RandLazyCropd(keys="raw", roi_size=settings.crop),
        ComputeDaskd(keys="raw", dtype="float16"),
    ])  # fmt: skip
    plain(
        {vocabulary.PATH: str(path), vocabulary.TIMEPOINTS: 0}
    )  # open the file: measured apart from the map
    pipeline(
        {vocabulary.PATH: str(path), vocabulary.TIMEPOINTS: 0}
    )  # warm: first reads of the coarse level
    sample = {
        vocabulary.PATH: str(path),
        vocabulary.TIMEPOINTS: settings.timepoints - 1,
    }  # a new timepoint
    t0 = time.perf_counter()
    pipeline(sample)
    first = time.perf_counter() - t0
    times, base = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        pipeline(sample)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain(sample)
        base.append(time.perf_counter() - t0)
    return {
        "foreground_first_crop_ms": first * 1e3,
        "foreground_crop_ms": float(np.median(times)) * 1e3,
        "uniform_crop_ms": float(np.median(base)) * 1e3,
    }


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
