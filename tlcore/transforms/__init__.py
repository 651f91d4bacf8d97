"""MONAI-style dictionary transforms for the lazy path: load lazily, crop lazily, compute the
crop only.

    Compose([
        LoadLazyd(keys="raw"),                         # a dask array, metadata only
        RandLazyCropd(keys="raw", roi_size=(16, 64, 64)),  # or MONAI's RandSpatialCropd
        ComputeDaskd(keys="raw", dtype="float32"),     # reads only the crop -> torch.Tensor
        ...                                            # any MONAI transform from here on
    ])

Spatial crops are the only MONAI transforms that work on dask arrays (see docs/lazy-path.md for
the measured list); put everything else after :class:`ComputeDaskd`.

One module per kind: :mod:`~tlcore.transforms.load` (``LoadLazyd``),
:mod:`~tlcore.transforms.loaders` (the guides' and MONAI's signatures),
:mod:`~tlcore.transforms.crop` (``RandLazyCropd``), :mod:`~tlcore.transforms.compute`
(``ComputeDaskd``), :mod:`~tlcore.transforms.guards` (a transform in the wrong place names
itself), :mod:`~tlcore.transforms.foreground` (foreground-weighted crop origins),
:mod:`~tlcore.transforms.meta` (the metadata and crop box),
:mod:`~tlcore.transforms.normalize` (``NormalizeByImaged``: scale by the whole image's
percentiles). The transforms import MONAI and
torch, so names here load on first access: ``tlcore.transforms.guards`` alone stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore._aliases import lazy_names

if TYPE_CHECKING:
    from tlcore.transforms.compute import ComputeDaskd, WholeImageWarning
    from tlcore.transforms.crop import RandLazyCropd
    from tlcore.transforms.foreground import Foreground
    from tlcore.transforms.guards import LazyPipelineError
    from tlcore.transforms.load import LoadLazyd
    from tlcore.transforms.loaders import (
        BioIOImageLoaderd,
        LoadImaged,
        OmeZarrReader,
        TlcoreReader,
    )
    from tlcore.transforms.meta import meta_key
    from tlcore.transforms.normalize import NormalizeByImaged

_HOMES = {
    "BioIOImageLoaderd": "loaders",
    "ComputeDaskd": "compute",
    "Foreground": "foreground",
    "LazyPipelineError": "guards",
    "LoadImaged": "loaders",
    "LoadLazyd": "load",
    "NormalizeByImaged": "normalize",
    "OmeZarrReader": "loaders",
    "RandLazyCropd": "crop",
    "TlcoreReader": "loaders",
    "WholeImageWarning": "compute",
    "meta_key": "meta",
}

__all__ = [
    "BioIOImageLoaderd",
    "ComputeDaskd",
    "Foreground",
    "LazyPipelineError",
    "LoadImaged",
    "LoadLazyd",
    "NormalizeByImaged",
    "OmeZarrReader",
    "RandLazyCropd",
    "TlcoreReader",
    "WholeImageWarning",
    "meta_key",
]


__getattr__, __dir__ = lazy_names(
    __name__, {name: f"tlcore.transforms.{home}" for name, home in _HOMES.items()}
)
