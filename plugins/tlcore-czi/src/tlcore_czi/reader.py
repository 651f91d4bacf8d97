"""The tlcore hooks for Zeiss CZI files.

The entry point loads :data:`hooks`; this module imports only tlcore, and
:mod:`tlcore_czi.image` (with the native library) loads on the first real call, keeping
``tlcore plugins`` fast.
"""

from __future__ import annotations

from tlcore import ReaderHooks, ReaderInfo

NAME = "czi"

hooks = ReaderHooks(
    ReaderInfo(
        name=NAME,
        extensions=(".czi",),
        priority=10,
        description="Zeiss CZI: scenes, stitched mosaics (or raw tiles), pyramids, RGB, "
        "per-timepoint acquisition times (libCZI)",
        remote=False,
    ),
    "tlcore_czi.image",
)
