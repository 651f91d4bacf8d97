"""Per-crop read time of :mod:`tlcore.decoders.zarrfast` against zarr slicing and tensorstore, on the
throughput benchmark's dataset, in one process.

    .venv/bin/python benchmarks/zarrfast.py [--codec zstd|blosc|both] [--crops 200] [--passes 3]

Every crop is read by every reader in turn (the order rotates from crop to crop), so load
from other processes hits them alike; a pass is the whole crop list; each reader's figure is
the median per crop of its best pass. The first crop of each pass is a warm-up and not timed.
Readers: ``zarr`` (``zarr_array[crop]``), ``zarrfast-whole`` (this module with
``partial=False``), ``zarrfast`` (the default; compressed chunks are decoded whole either way,
so the two differ only on uncompressed stores), ``zarrfast-1thread`` (in the calling thread
only), and ``tensorstore`` when it is installed.
Every reader's pixels are checked against zarr's on the first pass.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tlcore import zarrfast
from tlcore.cli.bench.throughput import Settings, make_dataset, random_crops

Reader = Callable[[tuple[Any, ...]], np.ndarray]


@dataclass
class Result:
    name: str
    ms_per_crop: float  # median per crop, best pass
    crops_per_s: float  # 1000 / ms_per_crop
    passes_ms: list[float]


def readers(path: Path) -> dict[str, Reader]:
    """The readers to compare, each a function of one crop's index tuple."""
    import zarr

    array = zarr.open_array(str(path), path="0", mode="r")
    whole = zarrfast.open_array(array, partial=False)
    partial = zarrfast.open_array(array, partial=True)
    single = zarrfast.open_array(array, partial=True, threads=1)
    assert whole is not None and partial is not None and single is not None
    out: dict[str, Reader] = {
        "zarr": lambda key: np.asarray(array[key]),
        "zarrfast-whole": whole.__getitem__,
        "zarrfast": partial.__getitem__,
        "zarrfast-1thread": single.__getitem__,
    }
    try:
        import tensorstore as ts
    except ImportError:
        return out
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / "0")}}
    store = ts.open(spec, read=True, open=True).result()
    out["tensorstore"] = lambda key: np.asarray(store[key].read().result())
    return out


def measure(settings: Settings, passes: int = 3) -> tuple[list[Result], dict[str, float]]:
    """Time every reader on the settings' crops; also the share of bytes partial decoding
    skipped (``decoded``/``whole`` of the ``zarrfast`` reader, one pass)."""
    path = make_dataset(settings)
    cz, cy, cx = settings.crop
    keys = [
        (t, 0, slice(z, z + cz), slice(y, y + cy), slice(x, x + cx))
        for t, z, y, x in random_crops(settings, settings.crops + 1)
    ]
    funcs = readers(path)
    names = list(funcs)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for p in range(passes):
        per: dict[str, list[float]] = {name: [] for name in names}
        for i, key in enumerate(keys):
            order = names[i % len(names) :] + names[: i % len(names)]
            want = funcs["zarr"](key) if p == 0 else None
            for name in order:
                t0 = time.perf_counter()
                got = funcs[name](key)
                elapsed = time.perf_counter() - t0
                if i:
                    per[name].append(elapsed)
                if want is not None and not np.array_equal(got, want):
                    raise AssertionError(f"{name} read other pixels than zarr for {key}")
        for name in names:
            times[name].append(statistics.median(per[name]) * 1e3)
    results = []
    for name in names:
        best = min(times[name])
        results.append(Result(name, best, 1e3 / best, times[name]))
    zarrfast.stats.reset()
    for key in keys:
        funcs["zarrfast"](key)
    counts = zarrfast.stats.snapshot()
    saved = {
        "chunks_per_crop": counts["chunks"] / len(keys),
        "partial_share": counts["partial"] / max(counts["chunks"], 1),
        "decoded_share": counts["decoded_bytes"] / max(counts["chunk_bytes"], 1),
    }
    return results, saved


def report(settings: Settings, results: list[Result], saved: dict[str, float]) -> str:
    z, y, x = settings.shape
    lines = [
        f"{settings.codec}: {settings.crops} crops {settings.crop} of {settings.timepoints}x1x"
        f"{z}x{y}x{x} uint16 in 1x1x{'x'.join(map(str, settings.chunks))} chunks "
        f"({saved['chunks_per_crop']:.2f} chunks per crop; partial decode: "
        f"{saved['partial_share']:.0%} of chunks decoded in part, "
        f"{saved['decoded_share']:.0%} of chunk bytes decoded)",
    ]
    base = next(r for r in results if r.name == "zarr")
    for r in results:
        passes = ", ".join(f"{t:.1f}" for t in r.passes_ms)
        lines.append(
            f"  {r.name:17s} {r.ms_per_crop:6.1f} ms/crop {r.crops_per_s:6.1f} crops/s "
            f"{base.ms_per_crop / r.ms_per_crop:5.2f}x zarr   (passes: {passes})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", choices=("zstd", "blosc", "both"), default="both")
    parser.add_argument("--crops", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3)
    # Its own folder: the throughput benchmark may be writing its copy of the data meanwhile.
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "tlcore-bench-zarrfast"
    )
    args = parser.parse_args(argv)
    codecs = ("zstd", "blosc") if args.codec == "both" else (args.codec,)
    for codec in codecs:
        settings = replace(Settings(), codec=codec, crops=args.crops, data_dir=args.data_dir)
        results, saved = measure(settings, args.passes)
        print(report(settings, results, saved), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
