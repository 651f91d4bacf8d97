"""Per-format cost of opening a file's metadata and of reading one random single-timepoint crop,
through tlcore and through bioio's ``BioImage`` on the same files, in one run.

Each (library, file) runs in a fresh process, so the open is cold for both (no metadata cache,
imports paid before the clock starts). Crops are half the image in Y and X, every channel and
Z plane, at a random timepoint; the same boxes for both libraries. Run with ``make bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

FILES = [
    ("nd2", "nd2/example-timelapse.nd2"),
    ("nd2", "nd2/example-zstack.nd2"),
    ("czi", "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi"),
    ("czi", "czi/mosaic_test.czi"),
    ("lif", "lif/PR2729_frameOrderCombinedScanTypes.lif"),
    ("ome-tiff", "ome-tiff/FOV7_HV110_P0500510000.ome.tiff"),
    ("tiff", "tiff/stuck.tif"),
    ("ome-zarr", "ome-zarr/example-timelapse_from_nd2.ome.zarr"),
]
N_CROPS = 30

_CHILD = """
import json, statistics, sys, time
import numpy as np
library, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if library == "tlcore":
    import dask.array, tlcore  # imports paid before the clock, as bioio's are
    # The registry and the readers load on first use, as for a user: that is part of opening.
    t0 = time.perf_counter()
    image = tlcore.open_lazy(path)
    open_s = time.perf_counter() - t0
    shape = image.shape
    from tlcore.lazy.compute import compute  # what ComputeDaskd runs: one region read per crop
    def crop(t, y, x, h, w):
        return compute(image.data[t, :, :, y:y + h, x:x + w], "synchronous")
else:
    from bioio import BioImage
    t0 = time.perf_counter()
    image = BioImage(path)
    shape = tuple(int(n) for n in image.shape[:5])
    open_s = time.perf_counter() - t0
    def crop(t, y, x, h, w):
        data = image.get_image_dask_data("CZYX", T=t)[:, :, y:y + h, x:x + w]
        return np.asarray(data.compute(scheduler="synchronous"))
t_n, _, _, y_n, x_n = shape
h, w = max(1, y_n // 2), max(1, x_n // 2)
rng = np.random.default_rng(0)
boxes = [(int(rng.integers(0, t_n)), int(rng.integers(0, y_n - h + 1)),
          int(rng.integers(0, x_n - w + 1))) for _ in range(n)]
crop(*boxes[0], h, w)  # the first read may finish opening: timed apart
times, checksum = [], 0.0
for t, y, x in boxes:
    t0 = time.perf_counter()
    out = crop(t, y, x, h, w)
    times.append(time.perf_counter() - t0)
    checksum += float(out.astype(np.float64).sum())
print(json.dumps({"open_ms": open_s * 1e3, "crop_ms": statistics.median(times) * 1e3,
                  "shape": list(shape), "checksum": checksum}))
"""


def _run(library: str, path: Path) -> dict[str, object] | str:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, library, str(path), str(N_CROPS)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        return result.stderr.strip().splitlines()[-1][:60]
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_formats_against_bioio(testdata: Path) -> None:
    pytest.importorskip("bioio", reason="bioio is the baseline")
    rows = []
    for fmt, relative in FILES:
        path = testdata / relative
        rows.append((fmt, path.name, _run("tlcore", path), _run("bioio", path)))
    print(f"\nper format, cold open and median of {N_CROPS} single-timepoint crops (ms):")
    print(f"  {'format':9s} {'file':42s} {'open tl':>8s} {'bioio':>8s} {'x':>6s}   "
          f"{'crop tl':>8s} {'bioio':>8s} {'x':>6s}")  # fmt: skip
    for fmt, name, ours, theirs in rows:
        assert isinstance(ours, dict), f"tlcore failed on {name}: {ours}"
        if isinstance(theirs, dict):
            # Same boxes, same pixels: the libraries agree (bioio stitches mosaics like tlcore).
            if ours["shape"] == theirs["shape"]:
                assert ours["checksum"] == pytest.approx(theirs["checksum"], rel=1e-9)
            o_ratio = float(theirs["open_ms"]) / float(ours["open_ms"])  # type: ignore[arg-type]
            c_ratio = float(theirs["crop_ms"]) / float(ours["crop_ms"])  # type: ignore[arg-type]
            print(
                f"  {fmt:9s} {name[:42]:42s} {ours['open_ms']:8.1f} {theirs['open_ms']:8.1f} "
                f"{o_ratio:5.1f}x   {ours['crop_ms']:8.2f} {theirs['crop_ms']:8.2f} {c_ratio:5.1f}x"
            )
        else:
            print(
                f"  {fmt:9s} {name[:42]:42s} {ours['open_ms']:8.1f} {'fails':>8s} {'':6s}   "
                f"{ours['crop_ms']:8.2f}   bioio: {theirs}"
            )
    print("  (x: bioio's time over tlcore's; above 1 means tlcore is faster)")


def test_bench_formats_at_size(tmp_path: Path) -> None:
    """``tlcore bench formats`` on every writable format (``--size small`` here: 16 MiB per
    timepoint; the docs' table is ``--size medium``, users run ``--size large``). Prints the
    table; asserts only that every format has every figure and that tlcore's uncompressed CZI
    crop reads at most 8x the crop's bytes."""
    done = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "bench", "formats", "--json", "--size", "small",
         "--crops", "4", "--workers", "2", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    print(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {r["format"]: r for r in report["rows"]}
    assert len(rows) == 7
    for row in rows.values():
        for key in ("open_ms", "tlcore_ms", "dask_ms", "read_mib", "lazy_mib_per_worker"):
            assert row[key] is not None, (row["format"], key)
    assert rows["czi-raw"]["read_vs_crop"] <= 8, rows["czi-raw"]


def test_bench_formats_traces_what_holds_the_lazy_memory(tmp_path: Path) -> None:
    """``--rows trace`` on two formats (``--size small``): every figure is there, and the
    per-format breakdown is printed as its own table."""
    done = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "bench", "formats", "--size", "small",
         "--formats", "ome-zarr-0.5-sharded,czi-zstd", "--rows", "trace",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "What holds the lazy memory" in done.stdout
    table = done.stdout.split("What holds the lazy memory")[1]
    for fmt in ("ome-zarr-0.5-sharded", "czi-zstd"):
        line = next(row for row in table.splitlines() if row.startswith(f"| {fmt} |"))
        assert len(line.split("|")) == 9, line
