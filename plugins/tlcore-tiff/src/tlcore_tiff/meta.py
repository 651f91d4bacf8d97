"""Describe the scenes of a TIFF in tlcore's terms, from its metadata (cached per process).

Everything here reads metadata only (IFDs, OME-XML, ImageJ metadata), never pixel data. The
result, :class:`FileMeta`, is plain data cached per process and keyed by the file's identity
(size and mtime), so the hooks share one parse.

Two interpretations, chosen by ``mode``:

* ``"ome"``: the OME-XML decides the scenes (one per ``<Image>``), the axes (DimensionOrder),
  pixel sizes, channel names and times; SubIFD pyramids are levels. Files without usable OME-XML
  are refused.
* ``"tiff"``: a plain TIFF stack read through tifffile's series (ImageJ hyperstack, tifffile's
  "shaped" JSON, generic page stacks...), unless it carries usable OME-XML and no ``tiff_dims``
  option, in which case it is read exactly as in ``"ome"`` mode.

How a plain multi-page stack maps to TCZYX is documented in the README ("Which axis is which").
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import tifffile

from tlcore import PixelSizes, Source, TimeAxis
from tlcore_tiff import ome as ome_xml
from tlcore_tiff import physical
from tlcore_tiff.layout import (
    Layout,
    LevelMeta,
    Unsupported,
    build_layout,
    build_levels,
    check_data,
)
from tlcore_tiff.opening import OpenTiff, damage_reports, damaged, fsspec_filesystem, walk_ifds
from tlcore_tiff.options import dims_override
from tlcore_tiff.table import PageTable


class NotOmeTiff(ValueError):
    """The file is a TIFF but has no OME-XML tlcore can use (the plain reader may read it)."""


@dataclass(frozen=True)
class SceneMeta:
    """One scene (a tifffile series). ``problem`` says why it cannot be read, if so."""

    id: str
    name: str | None
    series: int
    dtype: str
    layout: Layout | None
    levels: tuple[LevelMeta, ...]
    time_axis: TimeAxis
    pixel_sizes: PixelSizes
    channel_names: tuple[str, ...]
    native_axes: str
    native_shape: tuple[int, ...]
    kind: str
    problem: str | None = None
    #: per level, where its pages keep their pixels and how to decode them (read from the IFDs
    #: once here, carried by the readers into DataLoader workers: they parse no IFD)
    tables: tuple[PageTable, ...] = field(default=(), compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class FileMeta:
    uri: str
    ome: bool
    scenes: tuple[SceneMeta, ...]


def _stamp(source: Source) -> tuple[int, int]:
    if source.is_local:
        st = os.stat(source.uri)
        return (st.st_size, st.st_mtime_ns)
    info = fsspec_filesystem(source).info(source.uri)
    return (int(info.get("size") or 0), hash(str(info.get("ETag") or info.get("mtime") or "")))


def file_meta(source: Source, mode: str) -> FileMeta:
    """The scenes of ``source`` read as ``mode`` ("ome" or "tiff"), cached per process.

    Raises:
        NotOmeTiff: mode "ome" and the file has no usable OME-XML.
        OptionError: a malformed ``tiff_*`` storage option.
        tifffile.TiffFileError, OSError: not a readable TIFF.
    """
    return _file_meta_cached(source, mode, _stamp(source))


@functools.lru_cache(maxsize=64)
def _file_meta_cached(source: Source, mode: str, stamp: tuple[int, int]) -> FileMeta:
    with damage_reports() as damage:
        try:
            meta = _parse(source, mode, stamp[0])
        except Exception as exc:
            if damage:
                raise damaged(damage, stamp[0]) from exc
            raise
    if damage:
        # tifffile skips IFDs and tag values it cannot reach and carries on: with the OME-XML
        # or later pages gone, what is left would be read with the wrong shape.
        raise damaged(damage, stamp[0])
    return meta


def _parse(source: Source, mode: str, file_size: int) -> FileMeta:
    dims = dims_override(source.storage_options, source.uri)
    if mode == "ome" and dims is not None:
        raise NotOmeTiff(
            "the tiff_dims storage option asks for a plain TIFF reading, which the 'tiff' "
            "reader does"
        )
    if dims is None:
        with OpenTiff(source, ome=True) as opened:
            walk_ifds(opened.tf)
            try:
                return _ome_meta(opened.tf, source.uri, file_size)
            except NotOmeTiff:
                if mode == "ome":
                    raise
            if not opened.tf.is_ome:
                return _plain_meta(opened.tf, source.uri, file_size, dims)
    # Read the plain structure, without tifffile's OME interpretation of it.
    with OpenTiff(source, ome=False) as opened:
        walk_ifds(opened.tf)
        return _plain_meta(opened.tf, source.uri, file_size, dims)


# -- OME -------------------------------------------------------------------------------------
def _ome_meta(tf: tifffile.TiffFile, uri: str, file_size: int) -> FileMeta:
    if not tf.is_ome or not tf.ome_metadata:
        raise NotOmeTiff("no OME-XML in the first page's ImageDescription")
    try:
        images = ome_xml.parse(tf.ome_metadata)
    except ValueError as exc:
        raise NotOmeTiff(str(exc)) from exc
    positions = [i for i, s in enumerate(tf.series) if s.kind == "ome"]
    series = [tf.series[i] for i in positions]
    if not images or not series:
        raise NotOmeTiff("tifffile found no OME image series (the OME-XML does not match the file)")
    matched = _match_images(images, series)
    ids = [img.id if img is not None else f"Image:{i}" for img, i in zip(matched, positions)]
    if len(set(ids)) != len(ids):
        ids = [f"Image:{i}" for i in range(len(series))]
    scenes = []
    for index, (image, position, scene_id) in enumerate(zip(matched, positions, ids)):
        scenes.append(_scene(tf, position, index, scene_id, uri, file_size, image, None))
    return FileMeta(uri, True, tuple(scenes))


def _match_images(
    images: Sequence[ome_xml.OmeImage], series: Sequence[Any]
) -> list[ome_xml.OmeImage | None]:
    """Pair tifffile's OME series with their ``<Image>`` elements (tifffile skips images
    without data, so the lists can differ in length)."""
    if len(images) == len(series):
        return list(images)
    out: list[ome_xml.OmeImage | None] = []
    j = 0
    for s in series:
        while j < len(images) and images[j].name != s.name:
            j += 1
        out.append(images[j] if j < len(images) else None)
        j += 1
    return out


# -- plain TIFF ------------------------------------------------------------------------------
def _plain_meta(tf: tifffile.TiffFile, uri: str, file_size: int, dims: str | None) -> FileMeta:
    if not tf.series:
        raise tifffile.TiffFileError(f"{uri}: tifffile found no image in the file")
    scenes = [
        _scene(tf, index, index, f"Image:{index}", uri, file_size, None, dims)
        for index in range(len(tf.series))
    ]
    return FileMeta(uri, False, tuple(scenes))


def _scene(
    tf: tifffile.TiffFile,
    position: int,
    index: int,
    scene_id: str,
    uri: str,
    file_size: int,
    image: ome_xml.OmeImage | None,
    dims: str | None,
) -> SceneMeta:
    series = tf.series[position]
    axes = series.get_axes(False)
    shape = tuple(int(n) for n in series.get_shape(False))
    base: dict[str, Any] = {
        "id": scene_id,
        "name": image.name if image is not None else (series.name or None),
        "series": position,
        "dtype": str(series.dtype),
        "native_axes": axes,
        "native_shape": shape,
        "kind": str(series.kind),
    }
    try:
        layout = build_layout(series, axes, shape, dims, image)
        levels = build_levels(series, layout)
        check_data(series, file_size)
        tables = tuple(PageTable(level, tf.byteorder) for level in series.levels[: len(levels)])
    except Unsupported as exc:
        empty = TimeAxis(size=0)
        return SceneMeta(
            layout=None,
            levels=(),
            time_axis=empty,
            pixel_sizes=PixelSizes(),
            channel_names=(),
            problem=str(exc),
            **base,
        )
    t, c = levels[0].shape[:2]
    return SceneMeta(
        layout=layout,
        levels=tuple(levels),
        time_axis=physical.time_axis(tf, image, t),
        pixel_sizes=physical.pixel_sizes(tf, series, image),
        channel_names=physical.channel_names(tf, series, image, index, c, layout.samples),
        tables=tables,
        **base,
    )
