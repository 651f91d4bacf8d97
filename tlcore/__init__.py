"""tlcore: train deep-learning models on huge microscopy timelapses, read lazily in place.

Importing tlcore is cheap: readers, dask, MONAI and torch load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore import _aliases
from tlcore._version import __version__
from tlcore.errors import (
    LevelNotFoundError,
    NoReaderError,
    PluginLoadWarning,
    ReaderError,
    SceneNotFoundError,
    TlcoreError,
)
from tlcore.images import LazyImage
from tlcore.io.source import Source
from tlcore.readers.api import levels, list_scenes, open_lazy, time_axis
from tlcore.readers.hooks import ReaderHooks
from tlcore.readers.hookspecs import hookimpl
from tlcore.readers.registry import Registry, get_registry, reset_registry
from tlcore.types import DIMS, Level, PixelSizes, ReaderInfo, TimeAxis

_aliases.install()

if TYPE_CHECKING:
    from tlcore.io.remote import RemoteError
    from tlcore.prediction import predict
    from tlcore.statistics import ImageStatistics, image_statistics
    from tlcore.training.datamodule import RandomTimelapseDatamodule
    from tlcore.training.dataset import TimelapseDataset
    from tlcore.transforms import (
        BioIOImageLoaderd,
        ComputeDaskd,
        Foreground,
        LoadImaged,
        LoadLazyd,
        NormalizeByImaged,
        OmeZarrReader,
        RandLazyCropd,
    )
    from tlcore.validation import ValidationError, validate_manifest

# Transforms, dataset and datamodule need MONAI, torch and Lightning: resolved on first
# attribute access only.
_LAZY = {
    "BioIOImageLoaderd": "tlcore.transforms",
    "RandomTimelapseDatamodule": "tlcore.training.datamodule",
    "TimelapseDataset": "tlcore.training.dataset",
    "ValidationError": "tlcore.validation",
    "RemoteError": "tlcore.io.remote",
    "predict": "tlcore.prediction",
    "validate_manifest": "tlcore.validation",
    "ComputeDaskd": "tlcore.transforms",
    "LoadLazyd": "tlcore.transforms",
    "RandLazyCropd": "tlcore.transforms",
    "Foreground": "tlcore.transforms",
    "LoadImaged": "tlcore.transforms",
    "OmeZarrReader": "tlcore.transforms",
    "NormalizeByImaged": "tlcore.transforms",
    "ImageStatistics": "tlcore.statistics",
    "image_statistics": "tlcore.statistics",
}

__all__ = [
    "DIMS",
    "BioIOImageLoaderd",
    "ComputeDaskd",
    "Foreground",
    "ImageStatistics",
    "LazyImage",
    "Level",
    "LevelNotFoundError",
    "LoadImaged",
    "LoadLazyd",
    "NoReaderError",
    "NormalizeByImaged",
    "OmeZarrReader",
    "PixelSizes",
    "PluginLoadWarning",
    "RandLazyCropd",
    "RandomTimelapseDatamodule",
    "ReaderError",
    "ReaderHooks",
    "RemoteError",
    "ReaderInfo",
    "Registry",
    "SceneNotFoundError",
    "Source",
    "TimeAxis",
    "TimelapseDataset",
    "TlcoreError",
    "ValidationError",
    "__version__",
    "get_registry",
    "hookimpl",
    "image_statistics",
    "levels",
    "list_scenes",
    "open_lazy",
    "predict",
    "reset_registry",
    "time_axis",
    "validate_manifest",
]


__getattr__, __dir__ = _aliases.lazy_names(__name__, _LAZY)
