"""The report of ``tlcore bench throughput``: the summary, the machine, the table."""

from __future__ import annotations

import contextlib
import math
import os
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tlcore.cli.bench.throughput_data import Row, Settings


def _summary(settings: Settings, path: Path, rows: list[Row]) -> dict[str, Any]:
    def rate(name: str, workers: int) -> float | None:
        found = [r.crops_per_s for r in rows if r.name == name and r.workers == workers]
        return found[0] if found else None

    w = settings.workers
    direct, ours = rate("direct", w), rate("tlcore", w)
    direct0, ours0 = rate("direct", 0), rate("tlcore", 0)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    from tlcore import decoders

    return {
        "crop_shape": list(settings.crop),
        "workers": w,
        "direct_crops_per_s": direct,
        "tlcore_crops_per_s": ours,
        "eager_crops_per_s": rate("eager", w),
        "ratio_tlcore_direct": ratio(ours, direct),
        "ratio_tlcore_direct_one_process": ratio(ours0, direct0),
        # The path alone: tlcore with zarr decoding, as direct decodes.
        "ratio_tlcore_zarr_direct": ratio(rate("tlcore-zarr", w), direct),
        "ratio_tlcore_zarr_direct_one_process": ratio(rate("tlcore-zarr", 0), direct0),
        "tensorstore_crops_per_s_one_process": rate("tensorstore", 0),
        "ratio_aligned_cache_direct": ratio(rate("aligned+cache", w), direct),
        "default_decoder": decoders.DEFAULT_DECODER,
        "dataset": {
            "path": str(path),
            "shape_tczyx": [settings.timepoints, 1, *settings.shape],
            "chunks": [1, 1, *settings.chunks],
            "codec": settings.codec,
            "dtype": "uint16",
            "crops": settings.crops,
        },
        "machine": machine(),
        "rows": [asdict(r) for r in rows],
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import zarr

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
        "zarr": zarr.__version__,
        "platform": platform.platform(),
    }


def _format_row(row: Row) -> str:
    peak = f"{row.peak_rss_mb:8.0f} / {row.peak_pss_mb:6.0f}" if row.peak_rss_mb else " " * 17
    cpu = f"{row.cpu_ms_per_crop:6.1f}" if row.cpu_ms_per_crop is not None else "     -"
    return (f"{row.name:>22} w={row.workers} {row.start_method:>5} {row.crops_per_s:8.1f} crops/s "
            f"CPU {cpu} ms/crop {row.decoded_mb_per_s:7.1f} MB/s  "
            f"amp {row.amplification or 0:5.1f}  "
            f"peak RSS/PSS MB {peak}  {row.note}")  # fmt: skip


def format_table(result: dict[str, Any]) -> str:
    """The rows as a Markdown table, with the ratio line."""
    lines = [
        "| row | workers | start | crops/s | CPU ms/crop | decoded MB/s | read amp. | "
        "peak RSS MB | peak PSS MB | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['name']} | {r['workers']} | {r['start_method']} | {r['crops_per_s']} | "
            f"{r.get('cpu_ms_per_crop') or ''} | "
            f"{r['decoded_mb_per_s']} | {r['amplification']} | {r['peak_rss_mb'] or ''} | "
            f"{r['peak_pss_mb'] or ''} | {r['note']} |"
        )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
