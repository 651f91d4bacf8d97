"""The tlcore hooks for Zeiss CZI files.

This module is what the entry point loads, so it imports only tlcore: the container parser,
pylibCZIrw and aicspylibczi load on the first real call, keeping ``tlcore plugins`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import ReaderInfo, hookimpl

if TYPE_CHECKING:
    from tlcore import LazyImage, Level, Source, TimeAxis

NAME = "czi"


@hookimpl
def reader_info() -> ReaderInfo:
    return ReaderInfo(
        name=NAME,
        extensions=(".czi",),
        priority=10,
        description="Zeiss CZI: scenes, stitched mosaics (or raw tiles), pyramids, RGB, "
        "per-timepoint acquisition times (libCZI)",
        remote=False,
    )


@hookimpl
def can_open(source: Source) -> bool | str:
    from tlcore_czi import image

    return image.can_open(source)


@hookimpl
def list_scenes(source: Source) -> list[str]:
    from tlcore_czi import image

    return image.list_scenes(source)


@hookimpl
def levels(source: Source, scene: int) -> list[Level]:
    from tlcore_czi import image

    return image.levels(source, scene)


@hookimpl
def time_axis(source: Source, scene: int) -> TimeAxis:
    from tlcore_czi import image

    return image.time_axis(source, scene)


@hookimpl
def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    from tlcore_czi import image

    return image.open_lazy(source, scene, level)
