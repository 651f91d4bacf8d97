"""tlcore: train deep-learning models on huge microscopy timelapses, read lazily in place.

Importing tlcore is cheap: readers, dask, MONAI and torch load only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlcore._version import __version__
from tlcore.api import levels, list_scenes, open_lazy, time_axis
from tlcore.errors import (
    LevelNotFoundError,
    NoReaderError,
    PluginLoadWarning,
    ReaderError,
    SceneNotFoundError,
    TlcoreError,
)
from tlcore.hookspecs import hookimpl
from tlcore.images import LazyImage
from tlcore.registry import Registry, get_registry, reset_registry
from tlcore.source import Source
from tlcore.types import DIMS, Level, PixelSizes, ReaderInfo, TimeAxis

if TYPE_CHECKING:
    from tlcore.datamodule import RandomTimelapseDatamodule
    from tlcore.dataset import TimelapseDataset
    from tlcore.prediction import predict
    from tlcore.remote import RemoteError
    from tlcore.transforms import (
        BioIOImageLoaderd,
        ComputeDaskd,
        Foreground,
        LoadImaged,
        LoadLazyd,
        OmeZarrReader,
        RandLazyCropd,
    )
    from tlcore.validate import ValidationError, validate_manifest

# Transforms, dataset and datamodule need MONAI, torch and Lightning: resolved on first
# attribute access only.
_LAZY = {
    "BioIOImageLoaderd": "tlcore.transforms",
    "RandomTimelapseDatamodule": "tlcore.datamodule",
    "TimelapseDataset": "tlcore.dataset",
    "ValidationError": "tlcore.validate",
    "RemoteError": "tlcore.remote",
    "predict": "tlcore.prediction",
    "validate_manifest": "tlcore.validate",
    "ComputeDaskd": "tlcore.transforms",
    "LoadLazyd": "tlcore.transforms",
    "RandLazyCropd": "tlcore.transforms",
    "Foreground": "tlcore.transforms",
    "LoadImaged": "tlcore.transforms",
    "OmeZarrReader": "tlcore.transforms",
}

__all__ = [
    "DIMS",
    "BioIOImageLoaderd",
    "ComputeDaskd",
    "Foreground",
    "LazyImage",
    "Level",
    "LevelNotFoundError",
    "LoadImaged",
    "LoadLazyd",
    "NoReaderError",
    "OmeZarrReader",
    "PixelSizes",
    "PluginLoadWarning",
    "RandLazyCropd",
    "RandomTimelapseDatamodule",
    "ReaderError",
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
    "levels",
    "list_scenes",
    "open_lazy",
    "predict",
    "reset_registry",
    "time_axis",
    "validate_manifest",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tlcore' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
