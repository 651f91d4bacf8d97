"""The training tier (torch, Lightning).

* :mod:`~tlcore.training.dataset`: :class:`TimelapseDataset`, one sample per (epoch, position)
  drawn from the manifest's rows, and the default pipeline;
* :mod:`~tlcore.training.sampler`: (epoch, position) pairs, shared among distributed ranks;
* :mod:`~tlcore.training.loader`: the stateful DataLoader and its worker errors;
* :mod:`~tlcore.training.workers`: a DataLoader worker's set-up;
* :mod:`~tlcore.training.collate`: samples into batches;
* :mod:`~tlcore.training.datamodule`: :class:`RandomTimelapseDatamodule` (Lightning).

Names load on first access: importing this package imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlcore._aliases import lazy_names

if TYPE_CHECKING:
    from tlcore.training.collate import INLINE_TENSOR_BYTES, Batch, collate_samples
    from tlcore.training.datamodule import RandomTimelapseDatamodule
    from tlcore.training.dataset import (
        ON_ERROR,
        SAMPLE_KEYS,
        SampleError,
        TimelapseDataset,
        default_transforms,
    )
    from tlcore.training.loader import TimelapseDataLoader, WorkerError
    from tlcore.training.sampler import TimelapseSampler
    from tlcore.training.workers import worker_init

_HOMES = {
    "Batch": "collate",
    "INLINE_TENSOR_BYTES": "collate",
    "ON_ERROR": "dataset",
    "RandomTimelapseDatamodule": "datamodule",
    "SAMPLE_KEYS": "dataset",
    "SampleError": "dataset",
    "TimelapseDataLoader": "loader",
    "TimelapseDataset": "dataset",
    "TimelapseSampler": "sampler",
    "WorkerError": "loader",
    "collate_samples": "collate",
    "default_transforms": "dataset",
    "worker_init": "workers",
}

__all__ = [
    "Batch",
    "INLINE_TENSOR_BYTES",
    "ON_ERROR",
    "RandomTimelapseDatamodule",
    "SAMPLE_KEYS",
    "SampleError",
    "TimelapseDataLoader",
    "TimelapseDataset",
    "TimelapseSampler",
    "WorkerError",
    "collate_samples",
    "default_transforms",
    "worker_init",
]


__getattr__, __dir__ = lazy_names(
    __name__, {name: f"tlcore.training.{home}" for name, home in _HOMES.items()}
)
