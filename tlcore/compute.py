"""Turning a lazy value into pixels: the one place :class:`tlcore.ComputeDaskd` (and users
outside MONAI) compute a dask array."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["compute"]


def compute(value: Any, scheduler: str | None = None) -> np.ndarray:
    """Compute ``value`` (a dask array, or anything array-like) into a numpy array.

    ``scheduler`` is dask's (``"synchronous"``, ``"threads"``); None uses dask's default.
    """
    if hasattr(value, "dask") and hasattr(value, "compute"):
        value = value.compute(scheduler=scheduler) if scheduler else value.compute()
    return np.asarray(value)
