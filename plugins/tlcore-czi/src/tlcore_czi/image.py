"""What the hooks return, built from the parsed document (:mod:`tlcore_czi.document`)."""

from __future__ import annotations

import itertools

from tlcore import LazyImage, Level, PixelSizes, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_czi.array import CziPlaneReader, CziTileReader
from tlcore_czi.directory import CziFormatError, sniff
from tlcore_czi.document import Document, Scene, load


def can_open(source: Source) -> bool | str:
    if not source.is_local:
        return "the CZI reader reads local files only (libCZI cannot read fsspec URLs)"
    try:
        head = source.read_bytes(0, 16)
    except OSError as exc:
        return f"unreadable: {type(exc).__name__}: {exc}"
    if not sniff(head):
        return "not a CZI file (no ZISRAWFILE header)"
    return True


def _scene(source: Source, scene: int) -> tuple[Document, Scene]:
    doc = load(source)
    return doc, doc.scene(scene)


def list_scenes(source: Source) -> list[str]:
    return [s.id for s in load(source).scenes]


def levels(source: Source, scene: int) -> list[Level]:
    _, meta = _scene(source, scene)
    out = []
    for i, f in enumerate(meta.factors):
        out.append(
            Level(
                index=i,
                shape=meta.shape(i),
                downsampling=(1.0, 1.0, 1.0, float(f), float(f)),
                chunks=meta.chunks(i),
            )
        )
    return out


def _time_axis(doc: Document, scene: Scene) -> TimeAxis:
    size = scene.ranges["T"][1]
    try:
        stamps = doc.acquisition_times(scene)
    except CziFormatError as exc:
        raise CziFormatError(f"{doc.path} scene {scene.id!r}: {exc}") from None
    if stamps is None:
        stamps = doc.recorded_offsets(size)
    if stamps is not None and any(b < a for a, b in itertools.pairwise(stamps)):
        stamps = None  # out of order: not a trustworthy clock
    interval = doc.nominal_interval()
    if interval is None and stamps is not None and size > 1 and stamps[-1] > stamps[0]:
        interval = (stamps[-1] - stamps[0]) / (size - 1)
    return TimeAxis(size=size, timestamps=stamps, interval=interval)


def time_axis(source: Source, scene: int) -> TimeAxis:
    doc, meta = _scene(source, scene)
    return _time_axis(doc, meta)


def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    doc, meta = _scene(source, scene)
    reader = (
        CziTileReader(source, meta, level)
        if meta.tile is not None
        else CziPlaneReader(source, meta, level)
    )
    return LazyImage(
        data=as_dask(reader),
        scene=meta.id,
        level=level,
        time_axis=_time_axis(doc, meta),
        pixel_sizes=PixelSizes(*doc.pixel_sizes_um(meta.factors[level])),
        channel_names=doc.channel_names(meta),
        scene_name=meta.name,
        metadata={
            "czi_scene_index": meta.czi_index,
            "czi_rect": list(meta.rect),
            "pixel_type": meta.pixel_type_name,
            "rgb_order": "RGB" if meta.samples == 3 else None,
            "tile": meta.tile.m if meta.tile is not None else None,
            "downsampling": meta.factors[level],
        },
    )
