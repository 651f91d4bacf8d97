"""Per-crop read time of tlcore.decoders.zarrfast (whole and partial decoding) against zarr
slicing and tensorstore, interleaved in one process: a small version of ``benchmarks/zarrfast.py``,
which measures the throughput benchmark's full dataset. Prints the table; asserts only that the
pixels agree (the script checks every reader against zarr)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from tlcore.cli.bench.throughput import Settings

pytestmark = pytest.mark.benchmark

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "zarrfast.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("zarrfast_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("codec", ["zstd", "blosc"])
def test_zarrfast_against_zarr_and_tensorstore(tmp_path: Path, codec: str) -> None:
    bench = _script()
    settings = replace(
        Settings(), shape=(64, 512, 512), timepoints=2, crops=60, codec=codec, data_dir=tmp_path
    )
    results, saved = bench.measure(settings, passes=2)
    print("\n" + bench.report(settings, results, saved))
