"""The tlcore hooks of the bioio bridge.

This module is what the entry point loads, so it imports only tlcore: bioio (about 3 s to
import, plus its plugin scan) loads on the first call that needs it. ``reader_info`` and the
refusals of files no installed bioio plugin declares read entry-point metadata only.

The bridge has the lowest priority and claims every name (``"*"``): the registry asks readers in
rank order and stops at the first yes, so a file a native tlcore reader opens never reaches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import ReaderInfo, hookimpl

if TYPE_CHECKING:
    from tlcore import LazyImage, Level, Source, TimeAxis

NAME = "bioio"


@hookimpl
def reader_info() -> ReaderInfo:
    from tlcore_bioio import discovery

    return ReaderInfo(
        name=NAME,
        extensions=("*",),
        priority=-100,
        description=discovery.describe(),
        # bioio readers differ in what they read remotely (bioio-nd2 refuses fsspec sources):
        # the registry hands the bridge a local copy of a remote file.
        remote=False,
    )


@hookimpl
def can_open(source: Source) -> bool | str:
    from tlcore_bioio import image

    return image.can_open(source)


@hookimpl
def list_scenes(source: Source) -> list[str]:
    from tlcore_bioio import image

    return image.list_scenes(source)


@hookimpl
def levels(source: Source, scene: int) -> list[Level]:
    from tlcore_bioio import image

    return image.levels(source, scene)


@hookimpl
def time_axis(source: Source, scene: int) -> TimeAxis:
    from tlcore_bioio import image

    return image.time_axis(source, scene)


@hookimpl
def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    from tlcore_bioio import image

    return image.open_lazy(source, scene, level)
