"""The bridge's hooks on bioio: which bioio reader opens a source, and what it reports.

A source is resolved once per process into a :class:`Spec` (plain values: the path, the bioio
plugin and its module, the glob naming), so a DataLoader worker that unpickles an image rebuilds
its ``BioImage`` without bioio's plugin scan. Metadata hooks share one ``BioImage`` per source
(bioio's scene and level are state on it, so it is used under a lock).
"""

from __future__ import annotations

import datetime
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from tlcore import LazyImage, Level, PixelSizes, Source, TimeAxis
from tlcore.lazy import as_dask
from tlcore_bioio import discovery
from tlcore_bioio.array import BioioArray, Layout, Spec, make_bioimage

T = TypeVar("T")
_CACHED = 32
_lock = threading.Lock()
_specs: OrderedDict[Any, Spec | str] = OrderedDict()
_images: OrderedDict[Any, tuple[threading.Lock, Any]] = OrderedDict()

#: OME time units -> seconds (ome_types' UnitsTime values).
_SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    while len(cache) > _CACHED:
        cache.popitem(last=False)


def resolve(source: Source) -> Spec | str:
    """The bioio reader for ``source``, or why there is none (cached per process)."""
    with _lock:
        if source.key in _specs:
            return _specs[source.key]
    spec = _resolve(source)
    with _lock:
        _remember(_specs, source.key, spec)
    return spec


def _resolve(source: Source) -> Spec | str:
    files = source.glob_matches()
    if files is not None:
        if discovery.GLOB_PLUGIN not in discovery.installed():
            return f"a glob pattern opens through {discovery.GLOB_PLUGIN}: pip install it"
        dims = source.reader_options().get("bioio_glob_dims")
        naming = discovery.glob_naming(source.uri, files, dims)
        if isinstance(naming, str):
            return naming
        return Spec(source.uri, discovery.GLOB_PLUGIN, "bioio_tiff_glob", naming.dims, len(files))
    why = discovery.cheap_refusal(source.uri)
    if why is not None:
        return why
    from bioio import BioImage
    from bioio_base.exceptions import UnsupportedFileFormatError

    try:
        # bioio rescans its plugins' package metadata on every call unless told to cache.
        plugin = BioImage.determine_plugin(source.uri, use_plugin_cache=True)
    except UnsupportedFileFormatError:
        found = ", ".join(discovery.installed())
        return f"no installed bioio reader reads it (tried {found})"
    return Spec(source.uri, plugin.entrypoint.name, plugin.entrypoint.value)


def can_open(source: Source) -> bool | str:
    spec = resolve(source)
    return True if isinstance(spec, Spec) else spec


def _spec(source: Source) -> Spec:
    spec = resolve(source)
    if isinstance(spec, str):
        raise ValueError(f"bioio cannot open {source.uri}: {spec}")
    return spec


def _with_image(source: Source, scene: int | None, level: int, fn: Callable[[Any], T]) -> T:
    """``fn(bioimage)`` with the shared BioImage of ``source`` set to ``scene`` and ``level``."""
    spec = _spec(source)
    with _lock:
        entry = _images.get(source.key)
    if entry is None:
        entry = (threading.Lock(), make_bioimage(spec))
        with _lock:
            entry = _images.setdefault(source.key, entry)
            _images.move_to_end(source.key)
            while len(_images) > _CACHED:
                _images.popitem(last=False)
    lock, bio = entry
    with lock:
        if scene is not None:
            bio.set_scene(scene)
            bio.set_resolution_level(level)
        return fn(bio)


def list_scenes(source: Source) -> list[str]:
    return _with_image(source, None, 0, lambda bio: [str(s) for s in bio.scenes])


def levels(source: Source, scene: int) -> list[Level]:
    def read(bio: Any) -> list[Level]:
        shapes = []
        for index in bio.resolution_levels:
            bio.set_resolution_level(index)
            shapes.append((int(index), Layout.of(bio)))
        bio.set_resolution_level(0)
        base = shapes[0][1].shape
        return [
            Level(
                index=i,
                shape=layout.shape,
                downsampling=tuple(b / n for b, n in zip(base, layout.shape)),  # type: ignore[arg-type]
                chunks=layout.chunks,
            )
            for i, (_, layout) in enumerate(shapes)
        ]

    return _with_image(source, scene, 0, read)


def _interval(bio: Any) -> float | None:
    """bioio's ``time_interval`` when it is a real duration. A reader that returns a bare
    number (bioio-ome-zarr: the file's value, its unit ignored) or nothing gives None."""
    value = bio.time_interval
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return None


def _plane_times(bio: Any, scene: int, size_t: int) -> tuple[float, ...] | None:
    """Per-timepoint times in seconds from the reader's OME metadata (the ``DeltaT`` of the
    planes at C=0, Z=0), when it has one for every timepoint; None otherwise."""
    try:
        ome = bio.ome_metadata
    except NotImplementedError:  # bioio's answer for a reader with no OME transform
        return None
    images = getattr(ome, "images", None) or []
    if scene >= len(images) or images[scene].pixels is None:
        return None
    times: dict[int, float] = {}
    for plane in images[scene].pixels.planes or []:
        if plane.the_c != 0 or plane.the_z != 0 or plane.delta_t is None:
            continue
        unit = getattr(plane.delta_t_unit, "value", plane.delta_t_unit) or "s"
        if unit not in _SECONDS:
            return None
        times[int(plane.the_t)] = float(plane.delta_t) * _SECONDS[unit]
    if sorted(times) != list(range(size_t)):
        return None
    return tuple(times[t] for t in range(size_t))


def _time_axis(bio: Any, scene: int, size_t: int) -> TimeAxis:
    return TimeAxis(size_t, timestamps=_plane_times(bio, scene, size_t), interval=_interval(bio))


def time_axis(source: Source, scene: int) -> TimeAxis:
    return _with_image(
        source, scene, 0, lambda bio: _time_axis(bio, scene, Layout.of(bio).shape[0])
    )


def _sizes(bio: Any) -> PixelSizes:
    """bioio's physical pixel sizes (micrometres); None where absent, not positive or not
    finite (a LIF file reports Z = -6.23)."""
    sizes = bio.physical_pixel_sizes

    def ok(v: Any) -> float | None:
        return float(v) if v is not None and math.isfinite(v) and v > 0 else None

    return PixelSizes(ok(sizes.Z), ok(sizes.Y), ok(sizes.X))


def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    spec = _spec(source)

    def read(bio: Any) -> LazyImage:
        layout = Layout.of(bio)
        array = BioioArray(spec, scene, level, layout, identity_key=source.key)
        metadata: dict[str, Any] = {"via": spec.plugin, "bioio_reader": spec.plugin}
        if spec.files is not None:
            metadata["files"] = spec.files
        return LazyImage(
            data=as_dask(array),
            scene=str(bio.scenes[scene]),
            level=level,
            time_axis=_time_axis(bio, scene, layout.shape[0]),
            pixel_sizes=_sizes(bio),
            channel_names=layout.channel_names,
            reader="bioio",
            uri=source.uri,
            scene_index=scene,
            metadata=metadata,
        )

    return _with_image(source, scene, level, read)
