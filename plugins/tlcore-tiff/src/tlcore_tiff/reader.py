"""The tlcore hooks of the two TIFF readers, ``ome-tiff`` and ``tiff``, from one distribution.

The entry points load :data:`ome_tiff` and :data:`tiff`, two :class:`tlcore.ReaderHooks` over
:mod:`tlcore_tiff.image` with another ``mode``. This module imports only tlcore: tifffile,
numpy and dask load on the first real call, keeping ``tlcore plugins`` fast.

* ``ome-tiff`` claims ``.ome.tif``/``.ome.tiff`` with a higher priority and accepts only files
  with usable OME-XML.
* ``tiff`` claims ``.tif``/``.tiff`` (so also ``x.ome.tif``, where it ranks below ``ome-tiff``
  and is only chosen when that one refuses). It reads OME-XML when the file has usable OME-XML
  (an OME-TIFF saved as ``.tif``) and no ``tiff_dims`` option; otherwise the plain TIFF stack.
"""

from __future__ import annotations

from tlcore import ReaderHooks, ReaderInfo

ome_tiff = ReaderHooks(
    ReaderInfo(
        name="ome-tiff",
        extensions=(".ome.tif", ".ome.tiff"),
        priority=20,
        description="OME-TIFF: scenes, SubIFD pyramids, DeltaT timestamps (tifffile)",
    ),
    "tlcore_tiff.image",
    mode="ome",
)

tiff = ReaderHooks(
    ReaderInfo(
        name="tiff",
        extensions=(".tif", ".tiff"),
        priority=0,
        description="TIFF stacks: ImageJ hyperstacks, tiled/compressed, RGB (tifffile)",
    ),
    "tlcore_tiff.image",
    mode="tiff",
)
