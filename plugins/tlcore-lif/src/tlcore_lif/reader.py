"""The tlcore hooks for Leica LIF files.

This module is what the entry point loads, so it imports only tlcore: liffile, numpy and the
layout code load on the first real call, keeping ``tlcore plugins`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import ReaderInfo, hookimpl

if TYPE_CHECKING:
    from tlcore import LazyImage, Level, Source, TimeAxis

NAME = "lif"


@hookimpl
def reader_info() -> ReaderInfo:
    return ReaderInfo(
        name=NAME,
        extensions=(".lif",),
        priority=10,
        description="Leica LIF images: memory-mapped planes, tile scans stitched (liffile)",
        # Planes are memory-mapped from a local file; fsspec sources are not supported.
        remote=False,
    )


@hookimpl
def can_open(source: Source) -> bool | str:
    from tlcore_lif import image

    return image.can_open(source)


@hookimpl
def list_scenes(source: Source) -> list[str]:
    from tlcore_lif import image

    return image.list_scenes(source)


@hookimpl
def levels(source: Source, scene: int) -> list[Level]:
    from tlcore_lif import image

    return image.levels(source, scene)


@hookimpl
def time_axis(source: Source, scene: int) -> TimeAxis:
    from tlcore_lif import image

    return image.time_axis(source, scene)


@hookimpl
def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    from tlcore_lif import image

    return image.open_lazy(source, scene, level)
