"""The files of ``tlcore bench formats``: one timepoint of the same synthetic pixels written in
every format tlcore can write, each with the format's own writer (pylibCZIrw, tifffile, zarr),
kept in a folder the user names and reused when already there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: C, Z, Y, X of the timepoint per ``--size``: about 1 GiB, 256 MiB and 16 MiB of uint16.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "large": (2, 64, 2048, 2048),
    "medium": (2, 64, 1024, 1024),
    "small": (2, 16, 512, 512),
}
FORMATS = (
    "czi-raw",
    "czi-zstd",
    "ome-tiff-tiled-zstd",
    "ome-tiff-strips",
    "imagej",
    "ome-zarr-0.5-sharded",
    "ome-zarr-0.4",
)


@dataclass
class Settings:
    size: str = "medium"
    formats: tuple[str, ...] = FORMATS
    data_dir: Path = field(default_factory=lambda: Path("tlcore-bench-formats"))
    crop: tuple[int, int, int] = (64, 64, 64)
    crops: int = 12
    workers: int = 4
    memory_samples: int = 16
    seed: int = 0
    rows: tuple[str, ...] = ("open", "crop", "bytes", "memory")

    @property
    def czyx(self) -> tuple[int, int, int, int]:
        if self.size not in SIZES:
            raise ValueError(f"--size must be one of {sorted(SIZES)}, got {self.size!r}")
        return SIZES[self.size]


def pixels(settings: Settings) -> np.ndarray:
    """The timepoint every format holds (C, Z, Y, X uint16), as the OME-Zarr writer makes it."""
    from tlcore.testing.synthetic import synthetic_timepoint

    return np.asarray(synthetic_timepoint(list(settings.czyx), 0, seed=settings.seed))


def _czi(path: Path, data: np.ndarray, compression: str | None) -> None:
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as writer:
        for c in range(data.shape[0]):
            for z in range(data.shape[1]):
                writer.write(
                    np.ascontiguousarray(data[c, z]),
                    plane={"T": 0, "C": c, "Z": z},
                    compression_options=compression,
                )
        writer.write_metadata(
            document_name=path.stem,
            channel_names={c: f"ch{c}" for c in range(data.shape[0])},
            scale_x=0.25e-6,
            scale_y=0.25e-6,
            scale_z=1e-6,
        )


def _ome_tiff(path: Path, data: np.ndarray, tiled: bool) -> None:
    import tifffile

    kwargs: dict[str, Any] = {"tile": (256, 256), "compression": "zstd"} if tiled else {}
    tifffile.imwrite(path, data[None], ome=True, metadata={"axes": "TCZYX"}, **kwargs)


def _imagej(path: Path, data: np.ndarray) -> None:
    import tifffile

    # ImageJ hyperstacks are TZCYXS: Z outside C.
    tifffile.imwrite(path, np.swapaxes(data, 0, 1)[None], imagej=True, metadata={"axes": "TZCYX"})


def _ome_zarr(path: Path, settings: Settings, version: str) -> None:
    from tlcore.testing.synthetic import write_ome_zarr

    c, z, y, x = settings.czyx
    chunks = (1, 1, min(z, 32), min(y, 256), min(x, 256))
    shards = (1, 1, z, min(y, 1024), min(x, 1024)) if version == "0.5" else None
    write_ome_zarr(path, (1, c, z, y, x), chunks, version=version, seed=settings.seed,
                   shards=shards)  # fmt: skip


_NAMES = {
    "czi-raw": "raw.czi",
    "czi-zstd": "zstd.czi",
    "ome-tiff-tiled-zstd": "tiled-zstd.ome.tif",
    "ome-tiff-strips": "strips.ome.tif",
    "imagej": "hyperstack.tif",
    "ome-zarr-0.5-sharded": "sharded.ome.zarr",
    "ome-zarr-0.4": "v04.ome.zarr",
}


def make_files(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Path]:
    """Write (or reuse) one file per format under ``data_dir/<size>/``; their paths."""
    folder = settings.data_dir / settings.size
    folder.mkdir(parents=True, exist_ok=True)
    data: np.ndarray | None = None
    out: dict[str, Path] = {}
    for fmt in settings.formats:
        if fmt not in _NAMES:
            raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        path = folder / _NAMES[fmt]
        done = folder / f".{_NAMES[fmt]}.done"
        out[fmt] = path
        if done.exists() and path.exists():
            continue
        log(f"writing {path} ...")
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if fmt.startswith("ome-zarr"):
            _ome_zarr(path, settings, "0.5" if "0.5" in fmt else "0.4")
        else:
            data = pixels(settings) if data is None else data
            if fmt == "czi-raw":
                _czi(path, data, None)
            elif fmt == "czi-zstd":
                _czi(path, data, "zstd1:ExplicitLevel=1")
            elif fmt == "imagej":
                _imagej(path, data)
            else:
                _ome_tiff(path, data, tiled=fmt == "ome-tiff-tiled-zstd")
        done.write_text("")
    return out


def disk_bytes(path: Path) -> int:
    """Bytes a file, or every file under a folder, takes."""
    if path.is_file():
        return path.stat().st_size
    return sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file() and os.sep + "." not in str(p)
    )
