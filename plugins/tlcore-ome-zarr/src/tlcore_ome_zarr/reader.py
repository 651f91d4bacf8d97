"""The tlcore hooks for OME-Zarr (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3).

The entry point loads :data:`hooks`; this module imports only tlcore, and
:mod:`tlcore_ome_zarr.image` (with the native library) loads on the first real call, keeping
``tlcore plugins`` fast.
"""

from __future__ import annotations

from tlcore import ReaderHooks, ReaderInfo

NAME = "ome-zarr"

hooks = ReaderHooks(
    ReaderInfo(
        name=NAME,
        extensions=(".ome.zarr", ".zarr"),
        priority=10,
        description="OME-NGFF 0.4/0.5 images, bioformats2raw collections and HCS plates (zarr)",
    ),
    "tlcore_ome_zarr.image",
)
