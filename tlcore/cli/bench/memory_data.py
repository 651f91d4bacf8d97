"""Settings and data of ``tlcore bench memory``: the generated OME-Zarr timepoints."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.cli.bench import mark_complete, reuse_or_clear
from tlcore.progress import Bar


@dataclass
class Settings:
    """Z, Y, X shapes; the data is ``timepoints`` x 1 x Z x Y x X uint16."""

    shape: tuple[int, int, int] = (64, 4096, 4096)
    chunks: tuple[int, int, int] = (32, 256, 256)
    crop: tuple[int, int, int] = (64, 64, 64)
    timepoints: int = 2
    workers: int = 4
    lazy_samples: int = 64
    eager_samples: int = 8
    seed: int = 0
    force: bool = False
    rows: tuple[str, ...] = ("noop", "lazy", "lazy-aligned", "eager")
    data_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "tlcore-bench")


def make_store(settings: Settings) -> Path:
    """Write (once) the benchmark's OME-Zarr and return its path."""
    import zarr
    from zarr.codecs import ZstdCodec

    z, y, x = settings.shape
    cz, cy, cx = settings.chunks
    name = f"memory-tp{settings.timepoints}-{z}x{y}x{x}-c{cz}x{cy}x{cx}.ome.zarr"
    path = settings.data_dir / name
    if reuse_or_clear(path):
        return path
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    f = 8  # level 1: 8x smaller in Y and X
    arrays = [
        root.create_array(
            str(level),
            shape=(settings.timepoints, 1, z, -(-y // s), -(-x // s)),
            chunks=(1, 1, cz, min(cy, -(-y // s)), min(cx, -(-x // s))),
            dtype="uint16",
            compressors=[ZstdCodec(level=1)],
            dimension_names=list("tczyx"),
        )
        for level, s in ((0, 1), (1, f))
    ]
    root.attrs["ome"] = _ome_attrs(f)
    # Two blocks: background, and a bright ellipsoid "cell" with a soft edge.
    zz, yy, xx = np.ogrid[:cz, :cy, :cx]
    r = ((zz - cz / 2) / (cz / 2.5)) ** 2 + ((yy - cy / 2) / (cy / 3)) ** 2
    r = r + ((xx - cx / 2) / (cx / 3)) ** 2
    cell = (100 + 1900 * np.exp(-2 * r)).astype(np.uint16)
    background = np.full((cz, cy, cx), 100, np.uint16)
    rng = np.random.default_rng(settings.seed)
    rows = settings.timepoints * -(-z // cz) * -(-y // cy)
    with Bar("writing the data", rows, unit="chunk rows") as bar:
        _write_rows(arrays, settings, f, cell, background, rng, bar)
    mark_complete(path)
    return path


def _write_rows(
    arrays: list[Any],
    settings: Settings,
    f: int,
    cell: np.ndarray[Any, Any],
    background: np.ndarray[Any, Any],
    rng: np.random.Generator,
    bar: Bar,
) -> None:
    z, y, x = settings.shape
    cz, cy, cx = settings.chunks
    for t in range(settings.timepoints):
        for z0 in range(0, z, cz):
            for y0 in range(0, y, cy):
                row = np.empty((min(cz, z - z0), min(cy, y - y0), x), np.uint16)
                for x0 in range(0, x, cx):
                    block = cell if rng.random() < 0.15 else background
                    w = min(cx, x - x0)
                    row[:, :, x0 : x0 + w] = block[: row.shape[0], : row.shape[1], :w]
                arrays[0][t, 0, z0 : z0 + row.shape[0], y0 : y0 + row.shape[1]] = row
                arrays[1][t, 0, z0 : z0 + row.shape[0], y0 // f : (y0 + row.shape[1]) // f] = row[
                    :, ::f, ::f
                ]
                bar.update()


def _ome_attrs(f: int) -> dict[str, Any]:
    space = [{"name": d, "type": "space", "unit": "micrometer"} for d in "zyx"]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, *space]
    datasets = [
        {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        for level, scale in ((0, [1.0, 1.0, 1.0, 0.1, 0.1]), (1, [1.0, 1.0, 1.0, 0.1 * f, 0.1 * f]))
    ]
    return {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
