"""`import tlcore` and `tlcore plugins` must stay light: no torch, MONAI, Lightning or dask."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "monai", "lightning", "pytorch_lightning", "dask", "zarr", "bioio"]


def loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys\nprint('LOADED:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("LOADED:"))
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_import_tlcore_is_light() -> None:
    assert loaded_after("import tlcore") == []


def test_plugins_command_is_light() -> None:
    assert loaded_after("from tlcore.cli import main\nmain(['plugins'])") == []


def test_transforms_load_on_demand() -> None:
    assert "monai" in loaded_after("import tlcore\ntlcore.ComputeDaskd")
