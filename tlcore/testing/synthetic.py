"""Synthetic OME-Zarr timelapses: moving, blurry "cells" over a noisy background.

Used by ``tlcore demo`` and the tests. Written one timepoint at a time, so a large timelapse
never has to fit in memory. Needs ``zarr`` (``pip install 'tlcore[testing]'``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

_UNITS = {"t": ("time", "second"), "c": ("channel", None)}


def synthetic_timepoint(
    shape_czyx: Sequence[int], t: int, seed: int = 0, n_cells: int = 12, dtype: Any = "uint16"
) -> np.ndarray:
    """One timepoint (C, Z, Y, X): gaussian blobs drifting with t, plus Poisson-like noise."""
    c_n, z_n, y_n, x_n = (int(n) for n in shape_czyx)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(n_cells, 3)) * (z_n, y_n, x_n)
    velocity = rng.normal(0, 1.5, size=(n_cells, 3)) * (0.2, 1, 1)
    radius = rng.uniform(0.04, 0.1, size=n_cells) * min(y_n, x_n)
    zz = np.arange(z_n, dtype=np.float32)[:, None, None]
    yy = np.arange(y_n, dtype=np.float32)[None, :, None]
    xx = np.arange(x_n, dtype=np.float32)[None, None, :]
    info = np.iinfo(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else None
    peak = min(info.max, 4000) if info else 1.0
    out = np.empty((c_n, z_n, y_n, x_n), dtype=dtype)
    noise = np.random.default_rng((seed, t))
    for c in range(c_n):
        img = np.zeros((z_n, y_n, x_n), dtype=np.float32)
        for i in range(n_cells):
            if i % c_n != c and c_n > 1 and i % 3 == 0:
                continue  # channels differ a little
            cz, cy, cx = (centres[i] + velocity[i] * t) % (z_n, y_n, x_n)
            r = radius[i]
            rz = max(r * z_n / max(y_n, 1), 1.0)
            img += np.exp(
                -((zz - cz) ** 2) / (2 * rz**2)
                - ((yy - cy) ** 2) / (2 * r**2)
                - ((xx - cx) ** 2) / (2 * r**2)
            )
        img = img / max(float(img.max()), 1e-6) * peak * 0.8 + peak * 0.05
        img += noise.normal(0, peak * 0.03, size=img.shape).astype(np.float32)
        if info:
            np.clip(img, 0, info.max, out=img)
        out[c] = img.astype(dtype)
    return out


def write_ome_zarr(
    path: str | os.PathLike[str],
    shape: Sequence[int] = (8, 2, 8, 128, 128),
    chunks: Sequence[int] | None = None,
    *,
    dtype: Any = "uint16",
    axes: str = "tczyx",
    n_levels: int = 1,
    interval_s: float | None = 2.0,
    pixel_sizes_um: Sequence[float] = (1.0, 0.25, 0.25),
    channel_names: Sequence[str] | None = None,
    version: str = "0.5",
    name: str | None = None,
    seed: int = 0,
    shards: Sequence[int] | None = None,
) -> Path:
    """Write an OME-Zarr timelapse and return its path.

    Args:
        shape: sizes of ``axes`` in that order (TCZYX by default).
        chunks: chunk shape in ``axes`` order; default one YX plane per chunk (capped at 256).
        axes: a subset of ``"tczyx"`` in that order, e.g. ``"tyx"`` for a 2-D timelapse.
        n_levels: pyramid levels, each halving Y and X.
        interval_s: time axis scale in seconds (written in milliseconds with its unit, to
            exercise unit conversion); None writes no unit.
        version: ``"0.5"`` (zarr v3) or ``"0.4"`` (zarr v2).
        shards: shard shape in ``axes`` order (zarr v3 sharding, level 0 only; ``version``
            ``"0.5"``), or None for unsharded chunks.
    """
    import zarr

    if len(shape) != len(axes) or set(axes) - set("tczyx"):
        raise ValueError(f"shape {shape} does not match axes {axes!r}")
    path = Path(path)
    sizes = dict(zip(axes, (int(n) for n in shape)))
    full = {d: sizes.get(d, 1) for d in "tczyx"}
    if chunks is None:
        chunks = [1 if d in "tcz" else min(sizes[d], 256) for d in axes]
    zarr_format: Literal[2, 3] = 3 if version == "0.5" else 2
    root = zarr.open_group(str(path), mode="w-", zarr_format=zarr_format)
    spatial_um = dict(zip("zyx", pixel_sizes_um))
    axes_meta: list[dict[str, Any]] = []
    for d in axes:
        if d == "t":
            entry: dict[str, Any] = {"name": "t", "type": "time"}
            if interval_s is not None:
                entry["unit"] = "millisecond"
        elif d == "c":
            entry = {"name": "c", "type": "channel"}
        else:
            entry = {"name": d, "type": "space", "unit": "micrometer"}
        axes_meta.append(entry)
    datasets = []
    arrays = []
    for level in range(n_levels):
        factor = 2**level
        lshape = [max(1, -(-sizes[d] // factor)) if d in "yx" else sizes[d] for d in axes]
        scale = []
        for d in axes:
            if d == "t":
                scale.append((interval_s or 1.0) * (1000.0 if interval_s is not None else 1.0))
            elif d == "c":
                scale.append(1.0)
            else:
                scale.append(spatial_um[d] * (factor if d in "yx" else 1))
        arr = root.create_array(
            str(level),
            shape=tuple(lshape),
            chunks=tuple(min(c, n) for c, n in zip(chunks, lshape)),
            dtype=dtype,
            dimension_names=list(axes) if zarr_format == 3 else None,
            shards=(
                tuple(min(c, n) for c, n in zip(shards, lshape))
                if shards is not None and level == 0 and zarr_format == 3
                else None
            ),
        )
        arrays.append(arr)
        datasets.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    czyx = [full["c"], full["z"], full["y"], full["x"]]
    for t in range(full["t"]):
        block = synthetic_timepoint(czyx, t, seed=seed, dtype=dtype)  # C, Z, Y, X
        for arr in arrays:
            f = 2 ** int(arr.path.rsplit("/", 1)[-1])
            down = block[:, :, ::f, ::f]
            plane_shape = [n for d, n in zip(axes, arr.shape) if d != "t"]
            key = (t,) if "t" in axes else ()
            arr[key] = down.reshape(plane_shape)
    multiscale: dict[str, Any] = {
        "axes": axes_meta,
        "datasets": datasets,
        "name": name or path.stem,
    }
    omero: dict[str, Any] = {
        "channels": [
            {"label": (channel_names[c] if channel_names else f"ch{c}"), "active": True}
            for c in range(full["c"])
        ]
    }
    if zarr_format == 3:
        ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscale], "omero": omero}
        root.attrs["ome"] = ome
    else:
        multiscale["version"] = "0.4"
        attrs: dict[str, Any] = {"multiscales": [multiscale], "omero": omero}
        root.attrs.update(attrs)
    return path
