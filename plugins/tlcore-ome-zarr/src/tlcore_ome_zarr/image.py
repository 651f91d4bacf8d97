"""What the hooks return, built from a store's parsed metadata (imports zarr)."""

from __future__ import annotations

import zarr.errors

from tlcore import LazyImage, Level, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_ome_zarr import labels as label_images
from tlcore_ome_zarr.array import ZarrArrayReader
from tlcore_ome_zarr.scene import SceneMeta, read_scene
from tlcore_ome_zarr.store import NotOmeZarr, read_layout, root_kind, tczyx


def can_open(source: Source) -> bool | str:
    """True when the root group holds OME-NGFF layout metadata; the reason otherwise.

    Only the root group is read (``zarr.json``; ``.zgroup`` and ``.zattrs`` when it is absent),
    and kept for the hooks that follow: a store that is OME-Zarr but breaks the spec deeper
    down is accepted here and fails in the next hook with an error naming the field.
    """
    try:
        root_kind(source)
    except NotOmeZarr as exc:
        return str(exc)
    except (OSError, ValueError, zarr.errors.BaseZarrError) as exc:
        return f"unreadable zarr metadata: {type(exc).__name__}: {exc}"
    return True


def _scene(source: Source, scene: int) -> SceneMeta:
    return read_scene(source, read_layout(source), scene)


def list_scenes(source: Source) -> list[str]:
    return [s.id for s in read_layout(source).scenes]


def levels(source: Source, scene: int) -> list[Level]:
    meta = _scene(source, scene)
    ms, dims = meta.multiscale, meta.multiscale.dims()
    base_shape = tczyx(meta.arrays[0].shape, dims)
    out = []
    for i, arr in enumerate(meta.arrays):
        shape = tczyx(arr.shape, dims)
        factors = []
        for d, n0, n in zip("TCZYX", base_shape, shape):
            s0, s = ms.scale(0, d), ms.scale(i, d)
            if s0 is not None and s is not None and s0 > 0 and s > 0:
                factors.append(s / s0)
            else:  # no usable scale (NGFF < 0.4, or a non-positive one): the shape ratio
                factors.append(n0 / n if n else 1.0)
        f = tuple(factors)
        out.append(Level(i, shape, (f[0], f[1], f[2], f[3], f[4]), tczyx(arr.chunks, dims)))
    return out


def _time_axis(meta: SceneMeta) -> TimeAxis:
    size = tczyx(meta.arrays[0].shape, meta.multiscale.dims())[0]
    return TimeAxis(size=size, timestamps=None, interval=meta.image.physical.interval)


def time_axis(source: Source, scene: int) -> TimeAxis:
    return _time_axis(_scene(source, scene))


def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    meta = _scene(source, scene)
    dims = meta.multiscale.dims()
    reader = ZarrArrayReader(source, meta.arrays[level], dims)
    n_channels = reader.shape[1]
    names = meta.multiscale.channel_labels or meta.entry.channel_names
    if names and len(names) == n_channels and all(names):
        channel_names = tuple(str(n) for n in names)
    else:
        channel_names = tuple(f"Channel:{scene}:{c}" for c in range(n_channels))
    choice = label_images.choose(source, meta, level)
    labels = {
        name: as_dask(ZarrArrayReader(source, label.arrays[k], label.multiscale.dims()))
        for name, label, k in choice.matched
    }
    return LazyImage(
        data=as_dask(reader),
        scene=meta.entry.id,
        level=level,
        time_axis=_time_axis(meta),
        pixel_sizes=meta.image.physical.pixel_sizes[level],
        channel_names=channel_names,
        scene_name=meta.entry.name,
        metadata={
            "ngff_version": meta.multiscale.version,
            "native_dims": dims,
            "array_path": meta.arrays[level].path,
            "label_paths": {name: label.arrays[k].path for name, label, k in choice.matched},
            "labels_skipped": dict(choice.skipped),
        },
        labels=labels,
        origin=meta.image.physical.origins[level],
    )
