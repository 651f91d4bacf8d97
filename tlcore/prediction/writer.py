"""The prediction's output: an OME-Zarr 0.5 image (zarr v3) and its record of finished units.

Layout of ``OUT.ome.zarr``::

    zarr.json            group; attributes "ome" (NGFF 0.5 multiscales, omero channel labels)
                         and "tlcore" (the run's settings, per-frame timestamps)
    0/                   level 0: T, C, Z, Y, X, chunks (1, 1, z, y, x), optionally sharded
    1/ ...               the pyramid (--levels), each halving Y and X
    .tlcore-predict/     done-<rank>.log: one line "t z y x" per unit written, appended after
                         the unit's bytes are in the store (what --resume skips)

A unit is one timepoint, all channels, one chunk (or shard) of Z, Y, X: written whole, once, so
no chunk is ever read back, rewritten, or written by two ranks.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.images import LazyImage
from tlcore.io.source import is_remote_path
from tlcore.prediction.errors import PredictionError
from tlcore.prediction.grid import UnitId

__all__ = ["RECORD_DIR", "OutputStore", "ome_attributes"]

#: The folder (inside the store) holding the record of finished units.
RECORD_DIR = ".tlcore-predict"


def ome_attributes(
    image: LazyImage,
    time: range,
    channel_names: Sequence[str],
    n_levels: int,
) -> dict[str, Any]:
    """The ``ome`` attribute of the output: the input level's pixel sizes and origin (in
    micrometres, as tlcore reads them), the selected frames' time grid in seconds, one omero
    channel per output channel and one dataset per pyramid level (each halving Y and X)."""
    seconds = image.time_axis.seconds()
    interval = image.time_axis.interval
    if interval is None and seconds is not None and len(time) > 1:
        # Recorded timestamps only: NGFF holds one regular step; the exact times go in
        # the "tlcore" attribute beside it.
        picked = [seconds[t] for t in time]
        interval = (picked[-1] - picked[0]) / (len(picked) - 1) or None
    t_scale = 1.0 if interval is None else float(interval) * time.step
    t0 = 0.0 if seconds is None or not len(time) else float(seconds[time.start])
    axes: list[dict[str, Any]] = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
    if interval is not None:
        axes[0]["unit"] = "second"
    sizes = image.pixel_sizes
    for name, size in zip("zyx", sizes):
        entry = {"name": name, "type": "space"}
        if size is not None:
            entry["unit"] = "micrometer"
        axes.append(entry)
    origin = image.origin
    datasets = []
    for level in range(n_levels):
        f = 2**level
        scale = [t_scale, 1.0]
        offset = [t0, 0.0]
        for d, size in enumerate(sizes):
            step = 1.0 if size is None else float(size)
            factor = f if d > 0 else 1  # Z is never downsampled
            scale.append(step * factor)
            base = 0.0 if origin is None or origin[d] is None else float(origin[d])  # type: ignore[arg-type]
            # A mean over `factor` voxels sits at their centre.
            offset.append(base + (factor - 1) / 2.0 * step)
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if origin is not None or t0 or level:
            transforms.append({"type": "translation", "translation": offset})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    return {
        "version": "0.5",
        "multiscales": [{"axes": axes, "datasets": datasets, "name": "prediction"}],
        "omero": {"channels": [{"label": str(n), "active": True} for n in channel_names]},
    }


class OutputStore:
    """An output store being written: open it with :meth:`create` or :meth:`reopen`.

    Args:
        path: the store (a local folder, ``*.ome.zarr`` by convention).
        rank: this process's rank; each rank appends to its own record.
    """

    def __init__(self, path: str | os.PathLike[str], rank: int = 0) -> None:
        import zarr

        self.path = Path(path)
        self.rank = rank
        self.group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
        self.array = zarr.open_array(str(self.path / "0"), mode="r+", zarr_format=3)
        self._log: Any = None

    @staticmethod
    def prepare(
        path: str | os.PathLike[str],
        *,
        inputs: Sequence[str],
        overwrite: bool,
        resume: bool,
        settings: Mapping[str, Any],
    ) -> bool:
        """Check that ``path`` may be written; True when it holds a run to resume.

        Raises:
            PredictionError: ``path`` is (or is inside, or holds) an input file.
            FileExistsError: ``path`` exists and neither ``overwrite`` nor ``resume`` is set,
                or ``overwrite`` would delete something that is not a zarr store.
            PredictionError: ``resume`` on a store written with other settings.
        """
        out = Path(path).resolve()
        for uri in inputs:
            if is_remote_path(uri):
                continue
            src = Path(uri.removeprefix("file://")).resolve()
            if out == src or src in out.parents or out in src.parents:
                raise PredictionError(
                    f"the output {path} would overlap the input {uri}: inputs are never "
                    "written; choose an --out outside it"
                )
        if not out.exists():
            return False
        if resume and (out / "zarr.json").is_file():
            previous = _read_settings(out)
            if previous is None:
                raise PredictionError(
                    f"{path} is not a store written by tlcore predict (no 'tlcore' settings in "
                    "its zarr.json): nothing to resume; use --overwrite or another --out"
                )
            differ = sorted(
                k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k)
            )
            if differ:
                shown = "; ".join(
                    f"{k}: was {previous.get(k)!r}, now {settings.get(k)!r}" for k in differ
                )
                raise PredictionError(
                    f"cannot resume {path}: it was written with other settings ({shown}); "
                    "rerun with the same settings, or use --overwrite"
                )
            return True
        if overwrite or resume:
            if out.is_dir() and ((out / "zarr.json").is_file() or not any(out.iterdir())):
                shutil.rmtree(out)
                return False
            raise FileExistsError(
                f"{path} exists and is not a zarr store: refusing to delete it with "
                "--overwrite; choose another --out"
            )
        raise FileExistsError(
            f"{path} already exists: pass --overwrite to replace it or --resume to finish "
            "an interrupted run (overwrite=True / resume=True in Python)"
        )

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        shape: Sequence[int],
        chunks: Sequence[int],
        shards: Sequence[int] | None,
        dtype: str,
        n_levels: int,
        ome: Mapping[str, Any],
        tlcore_attrs: Mapping[str, Any],
    ) -> None:
        """Write an empty store: the group's metadata and every level's array."""
        import zarr

        group = zarr.open_group(str(path), mode="w-", zarr_format=3)
        group.attrs.update({"ome": dict(ome), "tlcore": dict(tlcore_attrs)})
        fill = float("nan") if np.dtype(dtype).kind == "f" else 0
        for level in range(n_levels):
            f = 2**level
            lshape = (*shape[:3], *(-(-n // f) for n in shape[3:]))
            lchunks = tuple(min(c, n) for c, n in zip((1, 1, *chunks), lshape))
            lshards = None
            if shards is not None:
                lshards = tuple(
                    max(c, min(s, -(-n // c) * c))
                    for s, c, n in zip((1, 1, *shards), lchunks, lshape)
                )
            group.create_array(
                str(level),
                shape=lshape,
                chunks=lchunks,
                shards=lshards,
                dtype=dtype,
                fill_value=fill,
                dimension_names=["t", "c", "z", "y", "x"],
            )
        (Path(path) / RECORD_DIR).mkdir()

    def done(self) -> set[UnitId]:
        """The units recorded as written, by any rank (a torn last line is ignored)."""
        found: set[UnitId] = set()
        folder = self.path / RECORD_DIR
        for log in sorted(folder.glob("done-*.log")) if folder.is_dir() else []:
            for line in log.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4 and all(p.isdigit() for p in parts):
                    found.add((int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])))
        return found

    def write(self, unit: UnitId, box: Sequence[tuple[int, int]], values: np.ndarray) -> None:
        """Write one unit (C, Z, Y, X, already in the store's dtype), then record it."""
        (z0, z1), (y0, y1), (x0, x1) = box
        self.array[unit[0], :, z0:z1, y0:y1, x0:x1] = values
        if self._log is None:
            (self.path / RECORD_DIR).mkdir(exist_ok=True)
            self._log = open(self.path / RECORD_DIR / f"done-{self.rank}.log", "a")  # noqa: SIM115
        # Recorded only once its bytes are in the store: a kill between the two rewrites it.
        self._log.write(f"{unit[0]} {unit[1]} {unit[2]} {unit[3]}\n")
        self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def build_pyramid(self) -> None:
        """Fill levels 1.. from the level above, one output chunk at a time (a 2 x 2 mean in
        Y, X; a last odd row or column averages what there is)."""
        level = 1
        while str(level) in self.group:
            src, dst = self.group[str(level - 1)], self.group[str(level)]
            _downsample(src, dst)
            level += 1


def _downsample(src: Any, dst: Any) -> None:
    n_t, n_c, n_z, n_y, n_x = dst.shape
    _, _, cz, cy, cx = dst.chunks
    kind = np.dtype(dst.dtype).kind
    for t in range(n_t):
        for c in range(n_c):
            for z0 in range(0, n_z, cz):
                z1 = min(n_z, z0 + cz)
                for y0 in range(0, n_y, cy):
                    y1 = min(n_y, y0 + cy)
                    for x0 in range(0, n_x, cx):
                        x1 = min(n_x, x0 + cx)
                        block = np.asarray(
                            src[t, c, z0:z1, 2 * y0 : 2 * y1, 2 * x0 : 2 * x1], dtype=np.float64
                        )
                        mean = _mean2(block, y1 - y0, x1 - x0)
                        if kind in "iu":
                            info = np.iinfo(dst.dtype)
                            mean = np.clip(np.rint(mean), info.min, info.max)
                        dst[t, c, z0:z1, y0:y1, x0:x1] = mean.astype(dst.dtype)


def _mean2(block: np.ndarray, ny: int, nx: int) -> np.ndarray:
    z, by, bx = block.shape
    total = np.zeros((z, 2 * ny, 2 * nx))
    count = np.zeros((1, 2 * ny, 2 * nx))
    total[:, :by, :bx] = block
    count[:, :by, :bx] = 1.0
    sums = total.reshape(z, ny, 2, nx, 2).sum(axis=(2, 4))
    mean: np.ndarray = sums / count.reshape(1, ny, 2, nx, 2).sum(axis=(2, 4))
    return mean


def _read_settings(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    settings = meta.get("attributes", {}).get("tlcore", {}).get("predict")
    return settings if isinstance(settings, dict) else None
