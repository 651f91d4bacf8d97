"""Whole-timelapse prediction: ``tlcore.predict`` and ``tlcore predict``.

The package is named ``prediction`` so that ``tlcore.predict`` stays the function. Importing it
is free: torch and zarr load with the modules that need them.

- :mod:`~tlcore.prediction.grid`: tiles, units, blend weights, groups per rank (numpy);
- :mod:`~tlcore.prediction.writer`: the OME-Zarr output and its record of finished units;
- :mod:`~tlcore.prediction.assemble`: tile predictions into units, each written once;
- :mod:`~tlcore.prediction.data`: the tile dataset and model loading (torch);
- :mod:`~tlcore.prediction.run`: :func:`predict`;
- :mod:`~tlcore.prediction.lightning`: the Lightning datamodule and prediction writer;
- :mod:`~tlcore.prediction.cli`: ``tlcore predict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlcore.prediction.lightning import PredictionDataModule, PredictionWriter
    from tlcore.prediction.run import predict

__all__ = ["PredictionDataModule", "PredictionWriter", "predict"]

_LAZY = {
    "predict": "tlcore.prediction.run",
    "PredictionDataModule": "tlcore.prediction.lightning",
    "PredictionWriter": "tlcore.prediction.lightning",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tlcore.prediction' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
