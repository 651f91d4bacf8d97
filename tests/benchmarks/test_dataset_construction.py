"""Building a dataset over 10,000 files of 1,000 frames: tlcore's one entry per file against
the old way that enumerates every (file, timepoint), each in a fresh process, same run.

Run with ``make bench``; prints time and memory and their ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

N_FILES = 10_000
N_FRAMES = 1_000

_COMMON = f"""
import json, resource, time
import pandas as pd
paths = [f"/data/experiment/timelapse-{{i:05d}}.nd2" for i in range({N_FILES})]
frame = pd.DataFrame({{"path": paths,
                      "channel": "0", "split": "train"}})
import torch, tlcore.training.dataset, tlcore.sampling.manifest  # imports paid before the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
"""

# tlcore: rows, then the dataset; no file is opened (their timepoint counts are read on first use).
_TLCORE = (
    _COMMON
    + """
rows = tlcore.sampling.manifest.read_manifest(frame)["train"]
dataset = tlcore.training.dataset.TimelapseDataset(rows, transforms=lambda d: d, num_timepoints=1)
entries = len(dataset)
"""
)

# The old way (MultiDimImageDataset): one entry per (file, timepoint), its metadata held in a
# dict per entry. The files' timepoint counts are given (it opened each file to learn them).
_OLD = (
    _COMMON
    + f"""
entries_list = []
for row in frame.itertuples():
    for t in range({N_FRAMES}):
        entries_list.append({{"original_path": row.path, "channel": row.channel, "scene": 0,
                             "resolution": 0, "T": t, "split": row.split}})
entries = len(entries_list)
"""
)

_REPORT = """
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"entries": entries, "seconds": seconds, "kib": peak - base}))
"""


def _run(code: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", code + _REPORT], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_construction_cost(tmp_path: Path) -> None:
    ours = _run(_TLCORE)
    old = _run(_OLD)
    assert ours["entries"] == N_FILES and old["entries"] == N_FILES * N_FRAMES
    print(f"\n{N_FILES:,} files x {N_FRAMES:,} frames, dataset construction (fresh process each):")
    for name, r in (("tlcore (one entry per file)", ours), ("old (entry per timepoint)", old)):
        print(
            f"  {name:30s} {int(r['entries']):>11,} entries  {r['seconds']:8.2f} s  "
            f"{r['kib'] / 1024:9.1f} MiB above imports"
        )
    print(
        f"  ratio old / tlcore: {old['seconds'] / max(ours['seconds'], 1e-9):.0f}x time, "
        f"{old['kib'] / max(ours['kib'], 1):.0f}x memory"
    )
