"""The tlcore hooks for Nikon ND2 files.

This module is what the entry point loads, so it imports only tlcore: ``nd2``, numpy and dask
load on the first real call (in :mod:`tlcore_nd2.image`), keeping ``tlcore plugins`` fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import ReaderInfo, hookimpl

if TYPE_CHECKING:
    from tlcore import LazyImage, Level, Source, TimeAxis

NAME = "nd2"

# The first four bytes of a modern ND2 file and of a legacy (JPEG 2000) one.
_MAGIC = (b"\xda\xce\xbe\n", b"\x00\x00\x00\x0c")


@hookimpl
def reader_info() -> ReaderInfo:
    return ReaderInfo(
        name=NAME,
        extensions=(".nd2",),
        priority=10,
        description="Nikon NIS-Elements ND2 (positions, Z, channels, RGB, per-frame times)",
        # the nd2 library memory-maps the file: it needs a local path
        remote=False,
    )


@hookimpl
def can_open(source: Source) -> bool | str:
    if not source.is_local:
        return "the nd2 reader needs a local file (copy it locally first)"
    head = source.read_bytes(0, 4)
    if head not in _MAGIC:
        return f"not an ND2 file: it does not start with the ND2 signature (got {head!r})"
    return True


@hookimpl
def list_scenes(source: Source) -> list[str]:
    from tlcore_nd2 import image

    return image.list_scenes(source)


@hookimpl
def levels(source: Source, scene: int) -> list[Level]:
    from tlcore_nd2 import image

    return image.levels(source, scene)


@hookimpl
def time_axis(source: Source, scene: int) -> TimeAxis:
    from tlcore_nd2 import image

    return image.time_axis(source, scene)


@hookimpl
def open_lazy(source: Source, scene: int, level: int) -> LazyImage:
    from tlcore_nd2 import image

    return image.open_lazy(source, scene, level)
