"""The tlcore hooks for Leica LIF files.

The entry point loads :data:`hooks`; this module imports only tlcore, and
:mod:`tlcore_lif.image` (with the native library) loads on the first real call, keeping
``tlcore plugins`` fast.
"""

from __future__ import annotations

from tlcore import ReaderHooks, ReaderInfo

NAME = "lif"

hooks = ReaderHooks(
    ReaderInfo(
        name=NAME,
        extensions=(".lif",),
        priority=10,
        description="Leica LIF images: memory-mapped planes, tile scans stitched (liffile)",
        # Planes are memory-mapped from a local file; fsspec sources are not supported.
        remote=False,
    ),
    "tlcore_lif.image",
)
