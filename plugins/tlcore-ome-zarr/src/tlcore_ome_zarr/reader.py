"""The tlcore hooks for OME-Zarr (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3).

This module is what the entry point loads, so it imports only tlcore: zarr and the metadata
code load on the first real call, keeping ``tlcore plugins`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import ReaderInfo, hookimpl

if TYPE_CHECKING:
    from tlcore import LazyImage, Level, Source, TimeAxis

NAME = "ome-zarr"


@hookimpl
def reader_info() -> ReaderInfo:
    return ReaderInfo(
        name=NAME,
        extensions=(".ome.zarr", ".zarr"),
        priority=10,
        description="OME-NGFF 0.4/0.5 images, bioformats2raw collections and HCS plates (zarr)",
    )


@hookimpl
def can_open(source: Source) -> bool | str:
    from tlcore_ome_zarr import image

    return image.can_open(source)


@hookimpl
def list_scenes(source: Source) -> list[str]:
    from tlcore_ome_zarr import image

    return image.list_scenes(source)


@hookimpl
def levels(source: Source, scene: int) -> list[Level]:
    from tlcore_ome_zarr import image

    return image.levels(source, scene)


@hookimpl
def time_axis(source: Source, scene: int) -> TimeAxis:
    from tlcore_ome_zarr import image

    return image.time_axis(source, scene)


@hookimpl
def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    from tlcore_ome_zarr import image

    return image.open_lazy(source, scene, level)
