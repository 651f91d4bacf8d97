"""What the hooks return, built from an ND2 file's cached metadata (imports nd2 and dask)."""

from __future__ import annotations

from tlcore import LazyImage, Level, PixelSizes, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_nd2.array import ND2ArrayReader
from tlcore_nd2.metadata import FileMeta, load


def _scene_meta(source: Source, scene: int) -> FileMeta:
    meta = load(source)
    meta.check_scene(scene)
    return meta


# The first four bytes of a modern ND2 file and of a legacy (JPEG 2000) one.
_MAGIC = (b"\xda\xce\xbe\n", b"\x00\x00\x00\x0c")


def can_open(source: Source) -> bool | str:
    if not source.is_local:
        return "the nd2 reader needs a local file (copy it locally first)"
    head = source.read_bytes(0, 4)
    if head not in _MAGIC:
        return f"not an ND2 file: it does not start with the ND2 signature (got {head!r})"
    return True


def list_scenes(source: Source) -> list[str]:
    return list(load(source).scene_ids)


def levels(source: Source, scene: int) -> list[Level]:
    meta = _scene_meta(source, scene)
    # ND2 has no pyramid: one level, chunked like the reader (one frame per chunk).
    reader = ND2ArrayReader(source, scene, meta)
    c = reader.chunks
    return [Level(0, meta.shape, chunks=(c[0], c[1], c[2], c[3], c[4]))]


def time_axis(source: Source, scene: int) -> TimeAxis:
    return _scene_meta(source, scene).time_axis(scene)


def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    meta = _scene_meta(source, scene)
    reader = ND2ArrayReader(source, scene, meta)
    origin = meta.origins[scene]
    return LazyImage(
        data=as_dask(reader),
        scene=meta.scene_ids[scene],
        level=level,
        time_axis=meta.time_axis(scene),
        pixel_sizes=PixelSizes(*meta.pixel_sizes),
        channel_names=meta.channel_names,
        scene_name=meta.scene_names[scene],
        origin=PixelSizes(*origin) if origin is not None else None,
        metadata={
            "frame_chunks": list(reader.chunks),
            "rgb": meta.samples in (3, 4),
            "compressed": meta.compressed,
            "legacy": meta.legacy,
            "loop_sizes": dict(meta.sizes),
        },
    )
