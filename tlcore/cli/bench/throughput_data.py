"""Settings and data of ``tlcore bench throughput``: the generated OME-Zarr, the
metadata-only array of the chunk-count rows, the random crops."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.cli.bench import mark_complete, reuse_or_clear

DECODERS = ("tensorstore", "zarrs")


@dataclass
class Settings:
    """What one run measures. Shapes are Z, Y, X; the dataset is T x 1 x Z x Y x X uint16."""

    crop: tuple[int, int, int] = (32, 128, 128)
    workers: int = 2
    crops: int = 200
    timepoints: int = 4
    shape: tuple[int, int, int] = (64, 1024, 1024)
    chunks: tuple[int, int, int] = (32, 256, 256)
    codec: str = "zstd"
    seed: int = 0
    eager_crops: int = 12
    data_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "tlcore-bench")
    rows: tuple[str, ...] = ("direct", "tlcore", "tlcore-zarr", "tlcore-dask", "eager",
                             "decoders", "chunks", "aligned")  # fmt: skip
    chunk_counts: tuple[int, ...] = (300_000,)
    #: Also measure direct and tlcore in the main process (no workers).
    one_process: bool = True
    #: direct/tlcore rows are measured this many times, alternating; the best of each is kept.
    repeat: int = 1


@dataclass
class Row:
    """One measured configuration."""

    name: str
    workers: int
    crops: int
    seconds: float
    crops_per_s: float
    decoded_mb_per_s: float
    amplification: float | None
    peak_rss_mb: float | None
    peak_pss_mb: float | None
    start_method: str = "fork"
    note: str = ""
    #: CPU time of the whole tree (parent and workers) per timed crop: what the row costs the
    #: machine, steadier than crops/s on a shared machine.
    cpu_ms_per_crop: float | None = None


# -- data ----------------------------------------------------------------------------------------
def make_dataset(settings: Settings) -> Path:
    """The benchmark's OME-Zarr (written once per settings into ``data_dir``): smooth
    structure plus noise, so the codec has realistic work (about 2:1 with zstd)."""
    import zarr

    z, y, x = settings.shape
    cz, cy, cx = settings.chunks
    name = f"tp{settings.timepoints}-{z}x{y}x{x}-c{cz}x{cy}x{cx}-{settings.codec}.ome.zarr"
    path = settings.data_dir / name
    if reuse_or_clear(path):
        return path
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    array = root.create_array(
        "0",
        shape=(settings.timepoints, 1, z, y, x),
        chunks=(1, 1, cz, cy, cx),
        dtype="uint16",
        compressors=[_codec(settings.codec)],
        dimension_names=list("tczyx"),
    )
    root.attrs["ome"] = _ome_attrs()
    rng = np.random.default_rng(settings.seed)
    yy, xx = np.ogrid[:y, :x]
    plane = (300 * np.sin(yy / 37.0) * np.cos(xx / 53.0)).astype(np.float32)
    for t in range(settings.timepoints):
        for z0 in range(0, z, cz):
            depth = min(cz, z - z0)
            slab = rng.standard_normal((depth, y, x), dtype=np.float32)
            slab *= 40.0
            slab += plane
            slab += 600.0 + 10.0 * t
            array[t, 0, z0 : z0 + depth] = np.clip(slab, 0, 65535).astype(np.uint16)
    mark_complete(path)
    return path


def _codec(name: str) -> Any:
    from zarr.codecs import BloscCodec, ZstdCodec

    if name == "zstd":
        return ZstdCodec(level=3)
    if name == "blosc":
        return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")
    raise ValueError(f"codec must be zstd or blosc, got {name!r}")


def _ome_attrs() -> dict[str, Any]:
    space = [{"name": d, "type": "space", "unit": "micrometer"} for d in "zyx"]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, *space]
    scale = {"type": "scale", "scale": [1.0, 1.0, 1.0, 1.0, 1.0]}
    return {
        "version": "0.5",
        "multiscales": [
            {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [scale]}]}
        ],
    }


def metadata_only_array(settings: Settings, n_chunks: int) -> Path:
    """An OME-Zarr of about ``n_chunks`` chunks (of the settings' chunk shape, Z 8 deep) with
    no chunk written: every read is the fill value, so what is timed is the path, not codecs."""
    import zarr

    z, y, x = settings.shape
    cz, cy, cx = 8, settings.chunks[1] // 4, settings.chunks[2] // 4
    per_t = -(-z // cz) * -(-y // cy) * -(-x // cx)
    n_t = max(1, round(n_chunks / per_t))
    path = settings.data_dir / f"empty-{n_t * per_t}.ome.zarr"
    if not (path / "zarr.json").exists():
        root = zarr.open_group(str(path), mode="w")
        root.create_array("0", shape=(n_t, 1, z, y, x), chunks=(1, 1, cz, cy, cx),
                          dtype="uint16", dimension_names=list("tczyx"))  # fmt: skip
        root.attrs["ome"] = _ome_attrs()
    return path


def random_crops(
    settings: Settings, n: int, seed: int | None = None
) -> list[tuple[int, int, int, int]]:
    """``n`` random (t, z, y, x) crop origins, uniform over the dataset."""
    rng = np.random.default_rng(settings.seed if seed is None else seed)
    out = []
    for _ in range(n):
        z, y, x = (int(rng.integers(0, s - c + 1)) for s, c in zip(settings.shape, settings.crop))
        out.append((int(rng.integers(0, settings.timepoints)), z, y, x))
    return out


def touched_chunks(origin: Sequence[int], crop: Sequence[int], chunks: Sequence[int]) -> int:
    """Storage chunks a box touches (what zarr decodes for it)."""
    return math.prod((o + c - 1) // k - o // k + 1 for o, c, k in zip(origin, crop, chunks))
