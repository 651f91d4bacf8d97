"""What the hooks return, built from a store's parsed metadata (imports zarr)."""

from __future__ import annotations

import math

import zarr.errors

from tlcore import LazyImage, Level, PixelSizes, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_ome_zarr.array import ZarrArrayReader
from tlcore_ome_zarr.metadata import length_to_um, time_to_seconds
from tlcore_ome_zarr.store import (
    NotOmeZarr,
    SceneMeta,
    has_zarr_metadata,
    read_layout,
    read_scene,
)


def can_open(source: Source) -> bool | str:
    try:
        if not has_zarr_metadata(source):
            return "not a zarr store (no zarr.json, .zgroup or .zattrs at its root)"
        read_layout(source)
    except NotOmeZarr as exc:
        return str(exc)
    except (OSError, ValueError, zarr.errors.BaseZarrError) as exc:
        return f"unreadable zarr metadata: {type(exc).__name__}: {exc}"
    return True


def _scene(source: Source, scene: int) -> SceneMeta:
    return read_scene(source, read_layout(source), scene)


def list_scenes(source: Source) -> list[str]:
    return [s.id for s in read_layout(source).scenes]


def _tczyx(values: tuple[int, ...], dims: str) -> tuple[int, int, int, int, int]:
    by_dim = dict(zip(dims, values))
    t, c, z, y, x = (int(by_dim.get(d, 1)) for d in "TCZYX")
    return (t, c, z, y, x)


def levels(source: Source, scene: int) -> list[Level]:
    meta = _scene(source, scene)
    dims = meta.multiscale.dims()
    base_scale = meta.multiscale.scale_tczyx(0)
    base_shape = _tczyx(meta.arrays[0].shape, dims)
    out = []
    for i, arr in enumerate(meta.arrays):
        shape = _tczyx(arr.shape, dims)
        scale = meta.multiscale.scale_tczyx(i)
        factors = []
        for s0, s, n0, n in zip(base_scale, scale, base_shape, shape):
            if s0 and s and s0 > 0 and s > 0:
                factors.append(s / s0)
            else:  # no usable scale: fall back to the shape ratio
                factors.append(n0 / n if n else 1.0)
        f = tuple(factors)
        out.append(Level(i, shape, (f[0], f[1], f[2], f[3], f[4]), _tczyx(arr.chunks, dims)))
    return out


def _time_axis(meta: SceneMeta) -> TimeAxis:
    dims = meta.multiscale.dims()
    size = _tczyx(meta.arrays[0].shape, dims)[0]
    interval = None
    found = meta.multiscale.axis("T")
    if found is not None:
        index, axis = found
        interval = time_to_seconds(meta.multiscale.datasets[0].scale[index], axis.unit)
    return TimeAxis(size=size, timestamps=None, interval=interval)


def time_axis(source: Source, scene: int) -> TimeAxis:
    return _time_axis(_scene(source, scene))


def _pixel_sizes(meta: SceneMeta, level: int) -> PixelSizes:
    sizes: list[float | None] = []
    scale = meta.multiscale.scale_tczyx(level)
    for dim, value in zip("ZYX", scale[2:]):
        found = meta.multiscale.axis(dim)
        if found is None or value is None or not math.isfinite(value):
            sizes.append(None)
        else:
            sizes.append(length_to_um(value, found[1].unit))
    return PixelSizes(*sizes)


def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    meta = _scene(source, scene)
    dims = meta.multiscale.dims()
    reader = ZarrArrayReader(source, meta.arrays[level], dims)
    n_channels = reader.shape[1]
    labels = meta.multiscale.channel_labels or meta.entry.channel_names
    if labels and len(labels) == n_channels and all(labels):
        channel_names = tuple(str(n) for n in labels)
    else:
        channel_names = tuple(f"Channel:{scene}:{c}" for c in range(n_channels))
    return LazyImage(
        data=as_dask(reader),
        scene=meta.entry.id,
        level=level,
        time_axis=_time_axis(meta),
        pixel_sizes=_pixel_sizes(meta, level),
        channel_names=channel_names,
        scene_name=meta.entry.name,
        metadata={
            "ngff_version": meta.multiscale.version,
            "native_dims": dims,
            "array_path": meta.arrays[level].path,
        },
    )
