"""The tlcore hooks for Nikon ND2 files.

The entry point loads :data:`hooks`; this module imports only tlcore, and
:mod:`tlcore_nd2.image` (with the native library) loads on the first real call, keeping
``tlcore plugins`` fast.
"""

from __future__ import annotations

from tlcore import ReaderHooks, ReaderInfo

NAME = "nd2"

hooks = ReaderHooks(
    ReaderInfo(
        name=NAME,
        extensions=(".nd2",),
        priority=10,
        description="Nikon NIS-Elements ND2 (positions, Z, channels, RGB, per-frame times)",
        # the nd2 library memory-maps the file: it needs a local path
        remote=False,
    ),
    "tlcore_nd2.image",
)
