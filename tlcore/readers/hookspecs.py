"""The reader hook specification: the contract between tlcore and its format plugins.

A format plugin is a module (or any object) whose functions are marked with
:data:`tlcore.hookimpl` and whose names match the hooks below. It is found through the
``tlcore.readers`` entry point group::

    # the plugin's pyproject.toml
    [project.entry-points."tlcore.readers"]
    my-format = "my_package.reader"

A plugin implements :func:`reader_info` and :func:`open_lazy`; the other hooks are optional but
strongly recommended (the conformance kit in :mod:`tlcore.testing` checks all of them).

Every hook except :func:`reader_info` receives a :class:`tlcore.Source` describing what to open.
tlcore chooses exactly one plugin per source and calls only that plugin's hooks, so a plugin never
has to defer to another one. ``scene`` is always a resolved, in-range index (tlcore turns scene ids
into indices with :func:`list_scenes` before calling), and ``level`` is always in range.

What each hook may raise: anything. tlcore wraps unexpected exceptions in
:class:`tlcore.ReaderError`, naming the file, scene and plugin, so a plugin should let the native
library's exception propagate with its own message rather than swallowing it. A plugin must never
write to the user's data: open everything read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tlcore.images import LazyImage
    from tlcore.io.source import Source
    from tlcore.types import Level, ReaderInfo, TimeAxis

PROJECT_NAME = "tlcore"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's hook implementations: ``@tlcore.hookimpl def open_lazy(source, scene, level)``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def reader_info() -> ReaderInfo:
    """Describe the reader: its name, the extensions it claims and its priority.

    Called once, when the plugin is registered. Must be cheap and must not import the native
    library (keep that for the first real read) so that ``tlcore plugins`` stays fast.

    Returns:
        ReaderInfo: the reader's description (:class:`tlcore.ReaderInfo`). Its ``name`` should
        equal the entry point's name; tlcore registers the plugin under the entry point's name
        either way.
    """


@hookspec(firstresult=True)
def can_open(source: Source) -> bool | str | None:
    """Answer "can you open this source?" cheaply, before any other hook is called.

    Called only for plugins whose extensions match the source (and, when no installed reader
    claims the extension, for every reader as a content sniff). May look at the path and read a
    small header or metadata document (for a zarr store: its group metadata); must not read pixels.

    Returns:
        bool | str | None: ``True`` for yes, ``False`` for no. A ``str`` is a no with its
        reason, shown to the user when nothing can open the source (for example ``"no OME-NGFF
        'multiscales' metadata"``). ``None`` is no opinion: the extension match alone decides
        (and in a content sniff, it counts as no).
    """


@hookspec(firstresult=True)
def list_scenes(source: Source) -> list[str]:
    """Return the ids of the scenes (series, positions, wells) in the source, in file order.

    Ids are unique strings that stay stable across versions of the plugin, because users write
    them in manifests (OME-style ``"Image:0"`` where the format has no better name). A source
    with a single image returns one id. Reads metadata only.
    """


@hookspec(firstresult=True)
def levels(source: Source, scene: int) -> list[Level]:
    """Return the resolution levels of one scene, full resolution (level 0) first.

    Every level's ``shape`` is in T, C, Z, Y, X order; a format without a pyramid returns one
    level. ``downsampling`` gives, per T, C, Z, Y, X axis, how many level-0 pixels one pixel of
    this level spans (``(1, 1, 1, 2, 2)`` for a 2x YX pyramid step). Reads metadata only.
    """


@hookspec(firstresult=True)
def time_axis(source: Source, scene: int) -> TimeAxis:
    """Return the time axis of one scene: its length and, when the file records them, the
    per-frame ``timestamps`` and/or the nominal ``interval``, both in seconds.

    Report what the file really holds: ``None`` where a value is unknown, never a made-up
    default. Convert units to seconds. Reads metadata only (per-frame acquisition times stored
    in frame headers are fine to read; pixels are not).
    """


@hookspec(firstresult=True)
def open_lazy(source: Source, scene: int, level: int) -> LazyImage | None:
    """Open one scene at one resolution level as a :class:`tlcore.LazyImage`.

    Contract:

    * ``data`` is a 5-D dask array in T, C, Z, Y, X order (insert size-1 axes for missing
      dimensions), with chunks that follow the file's own storage unit (a zarr chunk, an ND2
      frame, a CZI subblock stack) so that a crop reads only what it touches.
    * Opening reads metadata only: no pixel is read until the array is computed.
    * The image pickles without open file handles (DataLoader workers unpickle it in another
      process); :class:`tlcore.lazy.ArrayReader` plus :func:`tlcore.lazy.as_dask` give this
      for free.
    * ``time_axis`` equals what :func:`time_axis` returns for the scene.

    Returns:
        LazyImage | None: the image, or ``None`` when the plugin finds it cannot open this
        source after all (tlcore then raises a :class:`tlcore.NoReaderError`).
    """
