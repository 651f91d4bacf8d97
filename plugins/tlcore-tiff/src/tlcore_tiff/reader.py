"""The tlcore hooks of the two TIFF readers, ``ome-tiff`` and ``tiff``, from one distribution.

The entry points load :data:`ome_tiff` and :data:`tiff`, two hook objects of one class. This
module imports only tlcore: tifffile, numpy and dask load on the first real call, keeping
``tlcore plugins`` fast.

* ``ome-tiff`` claims ``.ome.tif``/``.ome.tiff`` with a higher priority and accepts only files
  with usable OME-XML.
* ``tiff`` claims ``.tif``/``.tiff`` (so also ``x.ome.tif``, where it ranks below ``ome-tiff``
  and is only chosen when that one refuses). It reads OME-XML when the file has usable OME-XML
  (an OME-TIFF saved as ``.tif``) and no ``tiff_dims`` option; otherwise the plain TIFF stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import ReaderInfo, hookimpl

if TYPE_CHECKING:
    from tlcore import LazyImage, Level, Source, TimeAxis


class TiffHooks:
    """The hook implementations of one TIFF reader; ``mode`` is "ome" or "tiff"."""

    def __init__(self, info: ReaderInfo, mode: str) -> None:
        self.info = info
        self.mode = mode

    @hookimpl
    def reader_info(self) -> ReaderInfo:
        return self.info

    @hookimpl
    def can_open(self, source: Source) -> bool | str:
        from tlcore_tiff import image

        return image.can_open(source, self.mode)

    @hookimpl
    def list_scenes(self, source: Source) -> list[str]:
        from tlcore_tiff import image

        return image.list_scenes(source, self.mode)

    @hookimpl
    def levels(self, source: Source, scene: int) -> list[Level]:
        from tlcore_tiff import image

        return image.levels(source, self.mode, scene)

    @hookimpl
    def time_axis(self, source: Source, scene: int) -> TimeAxis:
        from tlcore_tiff import image

        return image.time_axis(source, self.mode, scene)

    @hookimpl
    def open_lazy(self, source: Source, scene: int, level: int) -> LazyImage:
        from tlcore_tiff import image

        return image.open_lazy(source, self.mode, scene, level)

    def __repr__(self) -> str:
        return f"<tlcore_tiff reader {self.info.name!r}>"


ome_tiff = TiffHooks(
    ReaderInfo(
        name="ome-tiff",
        extensions=(".ome.tif", ".ome.tiff"),
        priority=20,
        description="OME-TIFF: scenes, SubIFD pyramids, DeltaT timestamps (tifffile)",
    ),
    mode="ome",
)

tiff = TiffHooks(
    ReaderInfo(
        name="tiff",
        extensions=(".tif", ".tiff"),
        priority=0,
        description="TIFF stacks: ImageJ hyperstacks, tiled/compressed, RGB (tifffile)",
    ),
    mode="tiff",
)
