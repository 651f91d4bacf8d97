"""Whole-image statistics from a small sample: per-channel percentiles, mean and std of a
file's scene, estimated from a strided subset of its chunks (or, when asked, a coarse pyramid
level), cached per process and on disk.

:func:`image_statistics` is the entry point (``tlcore.image_statistics``);
:mod:`~tlcore.statistics.sample` chooses what to read, :mod:`~tlcore.statistics.estimate`
reads it and computes, :mod:`~tlcore.statistics.cache` remembers the result keyed by the file's
identity. Readers and numpy only: no torch.
"""

from __future__ import annotations

from tlcore.statistics.estimate import DEFAULT_PERCENTILES, ImageStatistics, image_statistics

__all__ = ["DEFAULT_PERCENTILES", "ImageStatistics", "image_statistics"]
