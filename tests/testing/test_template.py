"""`tlcore new-plugin NAME` writes a distribution whose tests pass, unchanged, under pytest.

The plugin is installed the way pip would leave it, without touching the shared virtual
environment: its src folder plus a dist-info with the entry point, both on PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


# ~10-14 s: installs nothing, but runs pytest on the generated plugin in a subprocess.
@pytest.mark.slow
def test_new_plugin_output_passes_pytest_unchanged(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "new-plugin", "npystack", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    root = tmp_path / "tlcore-npystack"
    assert (root / "src" / "tlcore_npystack" / "reader.py").is_file()
    site = tmp_path / "site"
    info = site / "tlcore_npystack-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlcore-npystack\nVersion: 0.1.0\n")
    # The entry point exactly as the generated pyproject.toml declares it.
    pyproject = (root / "pyproject.toml").read_text()
    assert 'npystack = "tlcore_npystack.reader"' in pyproject
    (info / "entry_points.txt").write_text("[tlcore.readers]\nnpystack = tlcore_npystack.reader\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(root / "src")]),
        "TLCORE_DISABLE_READERS": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root, capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, tail
    # Every rule ran: nothing skipped (the template gives a reference and writes kit samples).
    assert "skipped" not in summary, tail
