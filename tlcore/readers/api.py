"""The four public entry points. Each chooses a reader through the registry, resolves the scene
and level, calls the plugin and checks what comes back against the hook contract."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tlcore.errors import LevelNotFoundError, NoReaderError, ReaderError, SceneNotFoundError
from tlcore.images import LazyImage
from tlcore.io.source import Source
from tlcore.readers.registry import Registry, get_registry
from tlcore.types import Level, TimeAxis

Scene = int | str | None


def _prepare(
    uri: Any,
    reader: str | None,
    storage_options: Mapping[str, Any] | None,
    registry: Registry | None,
) -> tuple[Registry, Source, str]:
    reg = registry or get_registry()
    source = Source.from_any(uri, storage_options)
    return reg, source, reg.select(source, reader)


def _scene_ids(reg: Registry, source: Source, name: str) -> list[str]:
    scenes = reg.call(name, "list_scenes", source)
    if scenes is None:  # the plugin did not implement list_scenes: one image
        return ["Image:0"]
    if not isinstance(scenes, list) or not all(isinstance(s, str) for s in scenes):
        raise ReaderError(f"reader {name!r} returned {scenes!r} from list_scenes for {source.uri}")
    if not scenes:
        raise ReaderError(f"{source.uri}: reader {name!r} found no scenes in the file")
    return scenes


def resolve_scene(scenes: list[str], scene: Scene, uri: str) -> int:
    """Turn a scene index, id or None (the first scene) into an index, with a clear error."""
    if scene is None:
        return 0
    if isinstance(scene, bool):
        raise TypeError(f"scene must be an index or an id, got {scene!r}")
    if isinstance(scene, int):
        if -len(scenes) <= scene < len(scenes):
            return scene % len(scenes)
    elif isinstance(scene, str):
        if scene in scenes:
            return scenes.index(scene)
        if scene.strip().lstrip("-").isdigit():
            return resolve_scene(scenes, int(scene), uri)
    else:
        raise TypeError(f"scene must be an index or an id, got {scene!r}")
    shown = ", ".join(repr(s) for s in scenes[:20]) + (" ..." if len(scenes) > 20 else "")
    raise SceneNotFoundError(
        f"{uri} has no scene {scene!r}: it has {len(scenes)} scene(s), indices 0-"
        f"{len(scenes) - 1}, ids {shown}. Run `tlcore info {uri}` to list them."
    )


def _resolve(
    uri: Any,
    scene: Scene,
    reader: str | None,
    storage_options: Mapping[str, Any] | None,
    registry: Registry | None,
) -> tuple[Registry, Source, str, int]:
    reg, source, name = _prepare(uri, reader, storage_options, registry)
    index = resolve_scene(_scene_ids(reg, source, name), scene, source.uri)
    return reg, source, name, index


def list_scenes(
    uri: Any,
    reader: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> list[str]:
    """The scene ids of a file, in file order. Reads metadata only."""
    reg, source, name = _prepare(uri, reader, storage_options, registry)
    return _scene_ids(reg, source, name)


def levels(
    uri: Any,
    scene: Scene = None,
    reader: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> list[Level]:
    """The resolution levels of a scene, full resolution first: TCZYX shape, downsampling."""
    reg, source, name, index = _resolve(uri, scene, reader, storage_options, registry)
    result = _plugin_levels(reg, source, name, index)
    if result is None:
        return [_level_from_image(reg, source, name, index)]
    return result


def _plugin_levels(reg: Registry, source: Source, name: str, index: int) -> list[Level] | None:
    """The plugin's levels, checked; None when it does not implement the hook."""
    result = reg.call(name, "levels", source, scene=index)
    if result is None:
        return None
    if not result or not all(isinstance(lv, Level) for lv in result):
        raise ReaderError(f"reader {name!r} returned {result!r} from levels for {source.uri}")
    return list(result)


def _level_from_image(reg: Registry, source: Source, name: str, index: int) -> Level:
    image = _open(reg, source, name, index, 0)
    chunks = tuple(int(c) for c in image.data.chunksize)
    return Level(0, image.shape, chunks=(chunks[0], chunks[1], chunks[2], chunks[3], chunks[4]))


def time_axis(
    uri: Any,
    scene: Scene = None,
    reader: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> TimeAxis:
    """The time axis of a scene: ``.size``, ``.timestamps`` and ``.interval`` in seconds."""
    reg, source, name, index = _resolve(uri, scene, reader, storage_options, registry)
    result = reg.call(name, "time_axis", source, scene=index)
    if result is None:
        return _open(reg, source, name, index, 0).time_axis
    if not isinstance(result, TimeAxis):
        raise ReaderError(f"reader {name!r} returned {result!r} from time_axis for {source.uri}")
    return result


def _open(reg: Registry, source: Source, name: str, index: int, level: int) -> LazyImage:
    image = reg.call(name, "open_lazy", source, scene=index, level=level)
    if image is None:
        raise NoReaderError(
            f"reader {name!r} accepted {source.uri} but could not open scene {index} "
            f"level {level}; try another reader with reader='NAME'"
        )
    if not isinstance(image, LazyImage):
        raise ReaderError(f"reader {name!r} returned {type(image).__name__} from open_lazy")
    image = dataclasses.replace(image, reader=name, uri=source.uri, scene_index=index)
    try:
        image.check()
    except ValueError as exc:
        raise ReaderError(str(exc)) from exc
    return image


def open_lazy(
    uri: Any,
    scene: Scene = None,
    level: int = 0,
    reader: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> LazyImage:
    """Open one scene at one resolution level without reading pixels.

    Args:
        uri: a local path, a URL (``s3://...``) or a ``upath.UPath``.
        scene: an index into :func:`list_scenes`, a scene id, or None for the first scene.
        level: resolution level, 0 for full resolution.
        reader: force a reader by name instead of choosing by extension and content.
        storage_options: fsspec options for remote sources (credentials, ``endpoint_url``).
        registry: a registry other than the default one.

    Raises:
        FileNotFoundError: a local path that does not exist.
        NoReaderError: nothing installed can open it (the message lists what is installed,
            why each candidate refused, and what to install).
        SceneNotFoundError, LevelNotFoundError: out-of-range scene or level.
        ReaderError: the reader failed on the file.
    """
    reg, source, name, index = _resolve(uri, scene, reader, storage_options, registry)
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"level must be an int, got {level!r}")
    plugin_levels = _plugin_levels(reg, source, name, index)
    count = len(plugin_levels) if plugin_levels is not None else 1
    if not 0 <= level < count:
        raise LevelNotFoundError(
            f"{source.uri} scene {index} has {count} resolution level(s) (0-{count - 1}); "
            f"level {level} does not exist"
        )
    return _open(reg, source, name, index, level)
