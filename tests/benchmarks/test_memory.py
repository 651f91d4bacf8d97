"""Peak memory of a DataLoader tree on a 2 GiB timepoint: eager against lazy above a no-op
floor, measured in one run (``tlcore bench memory``). Run with ``make bench``.

The benchmark runs in its own process so that its process tree (parent and 4 workers) is only
the benchmark's. Prints the figures; asserts only that the report is complete and coherent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

KEYS = {
    "timepoint_bytes", "crop_bytes", "workers", "noop_peak_pss_bytes", "eager_peak_pss_bytes",
    "lazy_peak_pss_bytes", "eager_peak_rss_bytes", "lazy_peak_rss_bytes", "ratio_above_noop",
}  # fmt: skip


def test_memory_eager_against_lazy(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "bench", "memory", "--json",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    print(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))
    assert set(report) >= KEYS
    assert report["timepoint_bytes"] >= 2 * 2**30 and report["workers"] == 4
    assert report["eager_peak_pss_bytes"] > report["lazy_peak_pss_bytes"]
