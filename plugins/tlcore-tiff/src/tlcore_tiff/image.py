"""What the hooks return, for both readers (``mode`` "ome" or "tiff"), from :mod:`meta`."""

from __future__ import annotations

import tifffile

from tlcore import LazyImage, Level, PixelSizes, ReaderError, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_tiff.array import TiffArrayReader
from tlcore_tiff.meta import FileMeta, NotOmeTiff, SceneMeta, file_meta
from tlcore_tiff.opening import TIFF_MAGIC, read_header
from tlcore_tiff.options import OptionError


def can_open(source: Source, *, mode: str) -> bool | str:
    try:
        if read_header(source, 4) not in TIFF_MAGIC:
            return "not a TIFF file (no TIFF header)"
        meta = file_meta(source, mode)
    except NotOmeTiff as exc:
        return f"not an OME-TIFF: {exc}"
    except OptionError as exc:
        return str(exc)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        return f"not a readable TIFF: {type(exc).__name__}: {exc}"
    if not meta.scenes:
        return "tifffile found no image in the file"
    return True


def _meta(source: Source, mode: str) -> FileMeta:
    try:
        return file_meta(source, mode)
    except OptionError as exc:
        raise ReaderError(str(exc)) from exc


def _scene(source: Source, mode: str, scene: int) -> SceneMeta:
    meta = _meta(source, mode).scenes[scene]
    if meta.problem is not None:
        raise ReaderError(f"{source.uri} scene {meta.id!r} cannot be read: {meta.problem}")
    return meta


def list_scenes(source: Source, *, mode: str) -> list[str]:
    return [s.id for s in _meta(source, mode).scenes]


def levels(source: Source, scene: int, *, mode: str) -> list[Level]:
    meta = _scene(source, mode, scene)
    return [Level(i, lv.shape, lv.downsampling, lv.chunks) for i, lv in enumerate(meta.levels)]


def time_axis(source: Source, scene: int, *, mode: str) -> TimeAxis:
    return _scene(source, mode, scene).time_axis


def _level_pixel_sizes(meta: SceneMeta, level: int) -> PixelSizes:
    down = meta.levels[level].downsampling
    base = meta.pixel_sizes
    return PixelSizes(
        base.z,
        base.y * down[3] if base.y is not None else None,
        base.x * down[4] if base.x is not None else None,
    )


def open_lazy(source: Source, scene: int, level: int, *, mode: str) -> LazyImage:
    meta = _scene(source, mode, scene)
    reader = TiffArrayReader(source, mode, meta, level)
    return LazyImage(
        data=as_dask(reader),
        scene=meta.id,
        level=level,
        time_axis=meta.time_axis,
        pixel_sizes=_level_pixel_sizes(meta, level),
        channel_names=meta.channel_names,
        scene_name=meta.name,
        metadata={
            "tiff_series_kind": meta.kind,
            "native_axes": meta.native_axes,
            "native_shape": list(meta.native_shape),
            "page_axes_map": meta.layout.targets if meta.layout else None,
        },
    )
