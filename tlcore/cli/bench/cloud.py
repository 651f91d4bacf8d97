"""``tlcore bench cloud``: training crops from object storage against local disk, in one run.

Starts a real S3 server (moto, in its own process) on loopback and a relay in front of it
(:class:`tlcore.io.relay.Relay`, in its own process) that adds a latency to every request and
counts requests and bytes. One OME-Zarr timelapse (and, with ``--tiff``, the same pixels as a
tiled OME-TIFF) is read as random crops through :class:`tlcore.RandomTimelapseDatamodule`
from local disk and from S3 at each latency, for each worker count, and one table compares:

* crops/s over the epoch and steady (after every worker's first crop);
* the first crop of each worker (the slowest of them): what a worker's start costs;
* GET and HEAD requests per crop and KiB on the wire per crop, against the compressed bytes
  of the chunks a crop touches on average (from the stored chunk sizes and the crop's expected
  chunk span);
* tensorstore reading the same crops with 8 threads in one process, where it is installed;
* the loader's CPU per crop (parent and workers; the servers run in processes of their own);
* with ``--s3-client s3fs,obstore``, the S3 rows once per client of the workers' chunk reads
  (``TLCORE_S3_CLIENT``, :mod:`tlcore.io.clients`).

A loopback server shares the cores with the loader: compare a run at 30 ms with the same run
at 0 ms (how much latency is hidden) rather than with local disk alone.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcore.cli.bench import zyx
from tlcore.cli.bench.cloud_moto import moto_server
from tlcore.cli.bench.cloud_tensorstore import Run
from tlcore.io.clients import DEFAULT, ENV

BUCKET = "tlcore-bench"
CREDENTIALS = {"key": "bench", "secret": "bench", "client_kwargs": {"region_name": "us-east-1"}}


@dataclass
class Row:
    what: str
    workers: int
    crops: int
    seconds: float
    steady: float  # crops/s after every worker's first crop
    first_s: float  # the slowest worker's first crop
    gets: float = float("nan")
    heads: float = float("nan")
    kib: float = float("nan")
    throttled: int = 0
    cpu_ms: float = float("nan")  # the loader's CPU per crop: parent and workers
    firsts: list[float] = field(default_factory=list)  # when each worker's first crop arrived

    @property
    def rate(self) -> float:
        return self.crops / self.seconds


# -- servers -------------------------------------------------------------------------------------
def _relay_process(target: str, latency_s: float, throttle: float, conn: Any) -> None:
    from tlcore.io.relay import Relay

    relay = Relay(target, latency_s=latency_s, throttle=throttle, seed=1)
    conn.send(relay.url)
    while (command := conn.recv()) != "stop":
        conn.send(relay.snapshot() if command == "snapshot" else None)
    relay.stop()
    conn.send(None)


class RelayProcess:
    """A :class:`~tlcore.io.relay.Relay` in its own process (its threads then never compete
    with the loader's for this process's interpreter lock)."""

    def __init__(self, target: str, latency_s: float, throttle: float = 0.0) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_relay_process, args=(target, latency_s, throttle, child))
        self._proc.start()
        self.url: str = self._conn.recv()

    def snapshot(self) -> dict[str, int]:
        self._conn.send("snapshot")
        found: dict[str, int] = self._conn.recv()
        return found

    def stop(self) -> None:
        self._conn.send("stop")
        self._conn.recv()
        self._proc.join(10)


# -- data ----------------------------------------------------------------------------------------
def _expected_span(size: int, crop: int, chunk: int) -> float:
    """Chunks a crop of ``crop`` spans along an axis of ``size``, averaged over every start."""
    starts = range(max(size - crop, 0) + 1)
    return sum((s + min(crop, size) - 1) // chunk - s // chunk + 1 for s in starts) / len(starts)


def chunks_per_crop(shape: Sequence[int], crop: Sequence[int], chunks: Sequence[int]) -> float:
    out = 1.0
    for n, c, k in zip(shape, crop, chunks):
        out *= _expected_span(n, c, k)
    return out


def _write_tiff(store: Path, path: Path, tile: int, compression: str) -> float:
    """Write the store's pixels as a tiled OME-TIFF; returns its mean tile size in bytes."""
    import numpy as np
    import tifffile
    import zarr

    data = np.asarray(zarr.open_array(str(store / "0"), mode="r")[...])
    tifffile.imwrite(path, data, ome=True, tile=(tile, tile), compression=compression,
                     metadata={"axes": "TCZYX"})  # fmt: skip
    with tifffile.TiffFile(path) as tf:
        return float(np.mean([n for page in tf.pages for n in page.databytecounts]))


# -- runs ----------------------------------------------------------------------------------------
def _epoch(
    url: str,
    options: dict[str, Any],
    workers: int,
    crops: int,
    roi: tuple[int, int, int],
    seed: int,
    prefetch: bool | None = None,
    ready: Callable[[], None] | None = None,
) -> tuple[float, list[float]]:
    """One epoch of ``crops`` random crops through the datamodule: the loader's CPU seconds
    (this process and its workers, joined at the epoch's end) and when each crop arrived.
    The parent opens (validates) the file first, as a training run does, and workers get the
    opened image handed over (:mod:`tlcore.readers.cache`); ``ready`` is called once that is
    done, just before the clock starts (request counts start there)."""
    import pandas as pd
    from monai.transforms import Compose

    from tlcore.training.datamodule import RandomTimelapseDatamodule
    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    pipeline = Compose(
        [
            LoadLazyd(keys="raw", spatial_dims=3, storage_options=options),
            RandLazyCropd(keys="raw", roi_size=roi),
            ComputeDaskd(keys="raw", dtype="float32"),
        ]
    )
    dm = RandomTimelapseDatamodule(
        pd.DataFrame({"path": [url], "split": ["train"]}),
        transforms=pipeline,
        samples_per_epoch={"train": crops},
        storage_options=options,
        seed=seed,
        num_workers=workers,
        validate=True,
        prefetch=prefetch,
    )
    dm.setup("fit")
    if ready is not None:
        ready()
    import resource

    def cpu() -> float:
        own, kids = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0 = cpu()
    started = time.perf_counter()
    arrivals = [time.perf_counter() - started for _ in dm.train_dataloader()]
    return cpu() - cpu0, arrivals


def _row(what: str, workers: int, crops: int, arrivals: list[float]) -> Row:
    first = max(workers, 1)
    tail = arrivals[-1] - arrivals[first - 1]
    steady = (crops - first) / tail if tail > 0 and crops > first else float("nan")
    # Batches come back in order, one per worker in turn: the first ``workers`` arrivals are
    # each worker's first crop.
    firsts = list(arrivals[:workers]) if workers > 0 else []
    return Row(what, workers, crops, arrivals[-1], steady, arrivals[first - 1], firsts=firsts)


def _s3_row(relay: RelayProcess, what: str, url: str, workers: int,
            args: argparse.Namespace, prefetch: bool | None = None) -> Row:  # fmt: skip
    """One epoch from S3 through ``relay``: crops/s, first crops, requests and bytes per crop
    (counted from the end of the parent's opening to the end of the epoch)."""
    counts: list[dict[str, int]] = []
    cpu, arrivals = _epoch(
        url, relay_options(relay.url), workers, args.crops, args.crop, args.seed, prefetch,
        lambda: counts.append(relay.snapshot()),
    )  # fmt: skip
    before, after = counts[0], relay.snapshot()
    row = _row(what, workers, args.crops, arrivals)
    row.cpu_ms = cpu / args.crops * 1000
    row.gets = (after.get("GET", 0) - before.get("GET", 0)) / args.crops
    row.heads = (after.get("HEAD", 0) - before.get("HEAD", 0)) / args.crops
    row.kib = (after["bytes_down"] - before["bytes_down"]) / args.crops / 1024
    row.throttled = after.get("throttled", 0) - before.get("throttled", 0)
    _print_row(row)
    return row


def _tensorstore_run(relay: RelayProcess, args: argparse.Namespace) -> Run | str:
    """tensorstore with 8 threads on the same crops (:mod:`.cloud_tensorstore`): its figures,
    or why they are missing."""
    from tlcore.cli.bench.cloud_tensorstore import tensorstore_run

    credentials = (str(CREDENTIALS["key"]), str(CREDENTIALS["secret"]))
    shape = (args.timepoints, *args.shape)
    return tensorstore_run(
        relay.url, BUCKET, "m.ome.zarr/0", credentials, shape, args.crop, args.crops, args.seed
    )


def _tensorstore_note(before: Run | str, after: Run | str, latency: float,
                      rows: list[Row]) -> str:  # fmt: skip
    """tlcore's rows at this latency against tensorstore (its figures, or why missing), measured
    just before and just after them (their mean: the load of a shared machine drifts within a
    run), in crops/s and in CPU per crop."""
    from tlcore.cli.bench.cloud_tensorstore import THREADS

    head = f"tensorstore, {THREADS} threads, {latency:g} ms: "
    if isinstance(before, str) or isinstance(after, str):
        return head + str(before if isinstance(before, str) else after)
    rate, cpu = (before.rate + after.rate) / 2, (before.cpu_ms + after.cpu_ms) / 2
    head += f"{before.rate:.1f} before and {after.rate:.1f} after tlcore's rows, mean "
    ours = [r for r in rows if r.what.startswith("S3 zarr") and r.what.endswith(f" {latency:g} ms")]
    ratios = ", ".join(
        f"{r.what.removesuffix(f' {latency:g} ms').removeprefix('S3 zarr').strip() or 'default'}, "
        f"{r.workers} workers {r.rate / rate:.2f}x (steady {r.steady / rate:.2f}x; "
        f"CPU {r.cpu_ms:.1f} ms/crop, {r.cpu_ms / cpu:.1f}x)"
        for r in ours
    )
    return head + f"{rate:.1f} crops/s, CPU {cpu:.1f} ms/crop; tlcore/tensorstore: {ratios}"


def _throttle_rows(endpoint: str, url: str, rows: list[Row], args: argparse.Namespace,
                   client: str = "") -> tuple[list[Row], list[str]]:  # fmt: skip
    """Rows with the relay answering ``args.throttle`` of reads with 503 SlowDown, each
    against the row of the same latency, workers and client (``client``: the name the rows
    carry when several clients ran, else "") without faults (same run)."""
    out: list[Row] = []
    notes: list[str] = []
    if args.throttle <= 0:
        return out, notes
    latency = float(args.latency.split(",")[-1])
    relay = RelayProcess(endpoint, latency / 1000, throttle=args.throttle)
    try:
        for w in (int(n) for n in args.throttle_workers.split(",")):
            share = f"{args.throttle:.0%} 503"
            plain = f"S3 zarr{client and ' ' + client} {latency:g} ms"
            row = _s3_row(relay, f"{plain} {share}", url, w, args)
            out.append(row)
            base = next((r for r in rows if r.what == plain and r.workers == w), None)
            against = (
                f"{row.rate / base.rate:.2f}x the same run without faults ({base.rate:.1f} "
                f"crops/s; steady {row.steady:.1f} vs {base.steady:.1f})"
                if base is not None
                else "(no row without faults at this latency and worker count)"
            )
            notes.append(
                f"503 SlowDown on {args.throttle:.0%} of reads, {latency:g} ms, {w} workers: "
                f"{row.rate:.1f} crops/s, {against}; {row.throttled} requests throttled"
            )
    finally:
        relay.stop()
    return out, notes


def run(args: argparse.Namespace) -> int:
    import s3fs

    from tlcore.testing.synthetic import write_ome_zarr

    workers = [int(w) for w in args.workers.split(",")]
    tiff_workers = [int(w) for w in args.tiff_workers.split(",")]
    latencies = [float(ms) for ms in args.latency.split(",")]
    saved = original = os.environ.get(ENV)
    # one client: rows named as before; several: a row per client, named after it
    s3_clients = [c.strip() for c in args.s3_client.split(",")] if args.s3_client else [""]
    s3_clients = s3_clients if len(s3_clients) > 1 else [""]
    if args.s3_client and len(s3_clients) == 1:
        saved = args.s3_client.strip()
    tmp = Path(tempfile.mkdtemp(prefix="tlcore-bench-cloud-"))
    rows: list[Row] = []
    notes: list[str] = []
    try:
        store = write_ome_zarr(tmp / "m.ome.zarr", shape=(args.timepoints, 1, *args.shape),
                               chunks=(1, 1, *args.chunks), seed=args.seed)  # fmt: skip
        chunk_files = [p for p in (store / "0" / "c").rglob("*") if p.is_file()]
        mean_chunk = sum(p.stat().st_size for p in chunk_files) / len(chunk_files)
        per_crop = chunks_per_crop(args.shape, args.crop, args.chunks)
        touched_kib = per_crop * mean_chunk / 1024
        tiff = tmp / "m.ome.tif"
        tiff_touched: tuple[float, float] | None = None
        if args.tiff:  # a crop touches its tiles in each of its planes
            tile = _write_tiff(store, tiff, args.chunks[1], args.tiff_compression)
            tiles = chunks_per_crop(args.shape, args.crop, (1, *args.chunks[1:]))
            tiff_touched = (tiles, tiles * tile / 1024)
        for w in workers:
            cpu, arrivals = _epoch(str(store), {}, w, args.crops, args.crop, args.seed)
            rows.append(_row("local disk", w, args.crops, arrivals))
            rows[-1].cpu_ms = cpu / args.crops * 1000
            _print_row(rows[-1])
        with moto_server(stock=args.stock_moto) as endpoint:
            options = {"endpoint_url": endpoint, **CREDENTIALS}
            fs = s3fs.S3FileSystem(**options)
            _bucket(endpoint)
            fs.put(str(store), f"{BUCKET}/m.ome.zarr", recursive=True)
            if args.tiff:
                fs.put_file(str(tiff), f"{BUCKET}/m.ome.tif")
            targets = [("zarr", f"s3://{BUCKET}/m.ome.zarr")]
            if args.tiff:
                targets.append(("tiff", f"s3://{BUCKET}/m.ome.tif"))
            for latency in latencies:
                relay = RelayProcess(endpoint, latency / 1000)
                try:
                    ts_before = _tensorstore_run(relay, args) if args.tensorstore else ""
                    for (kind, url), (label, ahead) in _prefetch_runs(targets, args.prefetch):
                        for client in s3_clients:
                            os.environ[ENV] = client or saved or DEFAULT  # read by the workers
                            for w in workers if kind == "zarr" else tiff_workers:
                                what = f"S3 {kind}{label}{client and ' ' + client} {latency:g} ms"
                                rows.append(_s3_row(relay, what, url, w, args, ahead))
                    if args.tensorstore:
                        ts_after = _tensorstore_run(relay, args)
                        notes.append(_tensorstore_note(ts_before, ts_after, latency, rows))
                finally:
                    relay.stop()
            # The client of the last rows is still the workers' (TLCORE_S3_CLIENT).
            faulty, faulty_notes = _throttle_rows(endpoint, targets[0][1], rows, args,
                                                  s3_clients[-1])  # fmt: skip
            rows += faulty
            notes += faulty_notes
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.environ.pop(ENV, None)
        if original is not None:
            os.environ[ENV] = original
    print()
    print(table(rows, touched_kib, per_crop, args, tiff_touched))
    for r in rows:  # the target: a tiled TIFF at least half the zarr store's crops/s
        z = next((q for q in rows if q.workers == r.workers
                  and q.what == r.what.replace("S3 tiff", "S3 zarr", 1)), None)  # fmt: skip
        if r.what.startswith("S3 tiff") and z is not None:
            print(
                f"{r.what}, {r.workers} workers: {r.rate / z.rate:.2f}x the zarr store's "
                f"crops/s ({r.rate:.1f} vs {z.rate:.1f}; steady {r.steady / z.steady:.2f}x)"
            )
    for note in notes:
        print(note)
    for r in rows:
        if r.firsts:
            firsts = ", ".join(f"{f:.2f}" for f in r.firsts)
            print(f"first crop of each worker, {r.what}, {r.workers} workers (s): {firsts}")
    return 0


def _prefetch_runs(
    targets: list[tuple[str, str]], choice: str
) -> list[tuple[tuple[str, str], tuple[str, bool | None]]]:
    """Each target with each prefetch setting of ``--prefetch`` (a label for its rows)."""
    settings: dict[str, list[tuple[str, bool | None]]] = {
        "auto": [("", None)],
        "on": [(" prefetch", True)],
        "off": [(" no-prefetch", False)],
        "both": [(" prefetch", True), (" no-prefetch", False)],
    }
    return [(t, s) for s in settings[choice] for t in targets]


def _bucket(endpoint: str) -> None:
    import boto3  # type: ignore[import-untyped]

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["key"],
        aws_secret_access_key=CREDENTIALS["secret"],
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)


def relay_options(url: str) -> dict[str, Any]:
    return {"endpoint_url": url, **CREDENTIALS}


def _print_row(row: Row) -> None:
    print(f"  {row.what:<18} {row.workers} workers: {row.rate:5.1f} crops/s", file=sys.stderr)


def table(rows: list[Row], touched_kib: float, per_crop: float, args: argparse.Namespace,
          tiff: tuple[float, float] | None = None) -> str:  # fmt: skip
    """The rows as a markdown table, with the ratios the targets are about; ``tiff``: the tiles
    and KiB a crop touches in the TIFF, which its rows' bytes are compared with."""
    zero = {(r.what.replace(" 0 ms", ""), r.workers): r for r in rows if r.what.endswith(" 0 ms")}
    head = (
        f"{args.crops} random crops {args.crop} (Z,Y,X) per row from {args.timepoints} x "
        f"{args.shape} uint16, chunks {args.chunks} zstd; a crop touches {per_crop:.2f} chunks, "
        f"{touched_kib:.0f} KiB compressed, on average"
        + (
            f"; the TIFF rows' / touched: against its {tiff[0]:.1f} {args.tiff_compression} "
            f"tiles, {tiff[1]:.0f} KiB"
            if tiff
            else ""
        )
        + "\n\n"
        "| source | workers | crops/s | steady crops/s | vs 0 ms | slowest first crop (s) "
        "| GET/crop | HEAD/crop | KiB/crop | / touched | CPU ms/crop |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        base = None
        if " ms" in r.what and not r.what.endswith(" 0 ms"):
            base = zero.get((r.what.rsplit(" ", 2)[0], r.workers))
        ratio = f"{r.steady / base.steady:.2f}x" if base and base.steady else ""
        remote = r.gets == r.gets  # not NaN
        against = tiff[1] if tiff and r.what.startswith("S3 tiff") else touched_kib
        lines.append(
            f"| {r.what} | {r.workers} | {r.rate:.1f} | {r.steady:.1f} | {ratio} | {r.first_s:.2f} "
            + (
                f"| {r.gets:.2f} | {r.heads:.2f} | {r.kib:.0f} | {r.kib / against:.2f}x "
                if remote
                else "| | | | "
            )
            + f"| {r.cpu_ms:.0f} |"
        )
    return "\n".join(lines)


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``tlcore bench cloud``."""
    p = sub.add_parser(
        "cloud",
        help="crops/s from S3 (a loopback server behind a latency relay) against local disk",
        parents=[common],
    )
    p.add_argument("--crop", type=zyx, default=(32, 128, 128), help="Z,Y,X (default 32,128,128)")
    p.add_argument("--shape", type=zyx, default=(32, 512, 512), help="Z,Y,X of each timepoint")
    p.add_argument("--chunks", type=zyx, default=(32, 256, 256), help="Z,Y,X storage chunks")
    p.add_argument("--timepoints", type=int, default=4)
    p.add_argument("--workers", default="0,2,4,8", help="worker counts, comma-separated")
    p.add_argument("--latency", default="0,30", help="added ms per request, comma-separated")
    p.add_argument("--crops", type=int, default=160,
                   help="random crops per row (enough that the workers' start is not most "
                        "of the epoch)")  # fmt: skip
    p.add_argument("--tiff", action="store_true", help="also rows for a tiled OME-TIFF")
    p.add_argument("--tiff-workers", default="4", help="worker counts of the TIFF rows")
    p.add_argument("--tiff-compression", default="zlib",
                   help="the TIFF's tile codec, a tifffile compression name (default zlib, the "
                   "common one in microscopy; zstd: the zarr store's codec)")  # fmt: skip
    p.add_argument(
        "--prefetch",
        choices=("auto", "on", "off", "both"),
        default="auto",
        help="fetching the next samples' chunks ahead in the S3 rows (auto: the datamodule's "
        "default, on for remote images; both: a row with and without)",
    )
    p.add_argument("--s3-client", default="",
                   help="the DataLoader workers' S3 client for chunk and range reads "
                   "(TLCORE_S3_CLIENT): s3fs, obstore or auto; comma-separated for a row per "
                   "client, e.g. s3fs,obstore (default: the environment's, else auto)")  # fmt: skip
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--throttle", type=float, default=0.2,
                   help="share of reads answered 503 SlowDown in the fault rows, at the last "
                   "latency (default 0.2; 0: no fault rows)")  # fmt: skip
    p.add_argument("--throttle-workers", default="4", help="worker counts of the fault rows")
    p.add_argument("--stock-moto", action="store_true",
                   help="run moto as it comes: every GET then copies the whole object, so a "
                   "range of a large object costs far more than on a real object store "
                   "(see tlcore.cli.bench.cloud_moto)")  # fmt: skip
    p.add_argument("--no-tensorstore", dest="tensorstore", action="store_false",
                   help="skip the tensorstore rows")  # fmt: skip
    p.set_defaults(func=run)
