"""What the hooks return, built from a LIF file's parsed metadata (imports liffile lazily)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcore import LazyImage, Level, PixelSizes, ReaderError, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_lif.array import LifArrayReader, layout_extent, view_layout
from tlcore_lif.metadata import (
    FileMeta,
    ImageMeta,
    LifFormatError,
    nominal_interval,
    per_timepoint_seconds,
    read_file,
)
from tlcore_lif.mosaic import stitch_plan

#: ``open_lazy(path, storage_options={MOSAIC_OPTION: "tiles"})`` gives one scene per tile.
MOSAIC_OPTION = "lif_mosaic"
MOSAIC_MODES = ("stitch", "tiles")
#: LIF files start with 0x70 (4 bytes), a 4-byte size, then 0x2A.
MAGIC, MEMORY_MARK = b"\x70\x00\x00\x00", 0x2A


@dataclass(frozen=True)
class Scene:
    id: str
    meta: ImageMeta
    tile: int | None  # one tile of a tile scan (tiles mode), else None


def mosaic_mode(source: Source) -> str:
    """The ``lif_mosaic`` option of ``source.storage_options``: "stitch" (default) or "tiles"."""
    options: Mapping[str, Any] = source.storage_options
    unknown = sorted(k for k in options if k.startswith("lif_") and k != MOSAIC_OPTION)
    if unknown:
        raise ReaderError(
            f"{source.uri}: unknown lif option(s) {unknown}; the lif reader knows "
            f"{MOSAIC_OPTION!r} ({' or '.join(repr(m) for m in MOSAIC_MODES)})"
        )
    mode = options.get(MOSAIC_OPTION, "stitch")
    if mode not in MOSAIC_MODES:
        raise ReaderError(
            f"{source.uri}: storage option {MOSAIC_OPTION}={mode!r} is not one of {MOSAIC_MODES}"
        )
    return str(mode)


def can_open(source: Source) -> bool | str:
    if not source.is_local:
        return "the lif reader memory-maps local files only; copy the file locally first"
    try:
        head = source.read_bytes(0, 13)
    except OSError as exc:
        return f"cannot read the file: {exc}"
    if len(head) < 13 or head[:4] != MAGIC or head[8] != MEMORY_MARK:
        return "not a Leica LIF file (no LIF header at its start)"
    try:
        read_file(source)
    except LifFormatError as exc:
        return str(exc)
    return True


def _file(source: Source) -> FileMeta:
    try:
        return read_file(source)
    except LifFormatError as exc:
        raise ReaderError(str(exc)) from exc


def scenes(source: Source) -> list[Scene]:
    tiles = mosaic_mode(source) == "tiles"
    out: list[Scene] = []
    for meta in _file(source).images:
        if tiles and meta.problem is None and meta.n_tiles > 1:
            out.extend(Scene(f"{meta.path}:tile{m}", meta, m) for m in range(meta.n_tiles))
        else:
            out.append(Scene(meta.path, meta, None))
    return out


def list_scenes(source: Source) -> list[str]:
    return [s.id for s in scenes(source)]


def _reader(source: Source, scene: Scene) -> LifArrayReader:
    """The array reader of a scene, after checking that its pixels can be read (metadata
    only: the XML, the memory block's place in the file and the file's size)."""
    meta = scene.meta
    where = f"{source.uri}: scene {scene.id!r}"
    if meta.problem is not None:
        raise ReaderError(f"{where} cannot be read: {meta.problem}")
    file_size = _file(source).file_size
    end = meta.block_offset + meta.block_size
    if meta.block_offset < 0 or end > file_size:
        raise ReaderError(
            f"{where}: the file is truncated: the scene's pixel data ends at byte {end} but the "
            f"file has {file_size} bytes (an incomplete copy or download?); copy it again"
        )
    assert meta.dtype is not None
    offset, shape, strides = view_layout(meta)
    extent = layout_extent(offset, shape, strides)
    itemsize = np.dtype(meta.dtype).itemsize
    if extent.start < 0 or extent.stop - 1 + itemsize > meta.block_size:
        raise ReaderError(
            f"{where}: its XML describes pixels up to byte {extent.stop - 1 + itemsize} of "
            f"its memory block, which holds {meta.block_size} bytes; the file is corrupted"
        )
    if scene.tile is not None or meta.n_tiles == 1:
        return LifArrayReader(source, meta, tile=scene.tile or 0)
    if len(meta.tiles) != meta.n_tiles:
        raise ReaderError(
            f"{where}: a tile scan of {meta.n_tiles} tiles with {len(meta.tiles)} tile "
            f"positions cannot be stitched; open it as tiles with "
            f"storage_options={{{MOSAIC_OPTION!r}: 'tiles'}}"
        )
    try:
        plan, yx = stitch_plan(meta.tiles, meta.size("Y"), meta.size("X"))
    except ValueError as exc:
        raise ReaderError(
            f"{where}: {exc}; open it as tiles with storage_options={{{MOSAIC_OPTION!r}: 'tiles'}}"
        ) from exc
    return LifArrayReader(source, meta, plan=plan, stitched_yx=yx)


def levels(source: Source, scene: int) -> list[Level]:
    reader = _reader(source, scenes(source)[scene])
    t, c, z, y, x = reader.shape
    ct, cc, cz, cy, cx = reader.chunks
    return [Level(0, (t, c, z, y, x), chunks=(ct, cc, cz, cy, cx))]


def _time_axis(meta: ImageMeta) -> TimeAxis:
    return TimeAxis(
        size=meta.size("T"),
        timestamps=per_timepoint_seconds(meta),
        interval=nominal_interval(meta),
    )


def time_axis(source: Source, scene: int) -> TimeAxis:
    found = scenes(source)[scene]
    if found.meta.problem is not None:
        raise ReaderError(f"{source.uri}: scene {found.id!r} cannot be read: {found.meta.problem}")
    return _time_axis(found.meta)


def _pixel_sizes(meta: ImageMeta) -> PixelSizes:
    sizes = []
    for code in "ZYX":
        axis = meta.axis(code)
        sizes.append(axis.step_um() if axis is not None else None)
    return PixelSizes(*sizes)


def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    found = scenes(source)[scene]
    reader = _reader(source, found)
    meta = found.meta
    names = meta.channel_names
    if not all(names):
        names = tuple(f"Channel:{scene}:{c}" for c in range(len(names)))
    z_axis = meta.axis("Z")
    metadata: dict[str, Any] = {
        "lif_path": meta.path,
        "memory_block": meta.block_id,
        "stored_axes": "".join(a.code for a in meta.axes),
        # A negative Z Length means the stack was acquired towards decreasing Z; the pixel
        # size is its absolute value.
        "z_descending": bool(z_axis is not None and z_axis.length < 0),
    }
    if meta.n_tiles > 1:
        metadata["mosaic"] = "tile" if found.tile is not None else "stitched"
        metadata["tile_count"] = meta.n_tiles
        metadata["tile_stage_positions_um"] = [[t.pos_y * 1e6, t.pos_x * 1e6] for t in meta.tiles]
        if found.tile is not None:
            metadata["tile"] = found.tile
    return LazyImage(
        data=as_dask(reader),
        scene=found.id,
        level=level,
        time_axis=_time_axis(meta),
        pixel_sizes=_pixel_sizes(meta),
        channel_names=names,
        scene_name=meta.name,
        metadata=metadata,
    )
