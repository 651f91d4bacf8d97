"""The error :func:`tlcore.predict` raises for bad settings, models and outputs."""

from __future__ import annotations

from tlcore.errors import TlcoreError

__all__ = ["PredictionError"]


class PredictionError(TlcoreError, ValueError):
    """A prediction that cannot run as asked: bad settings, an output that overlaps the input
    or was written with other settings, a model whose output does not fit. The message says
    what to change. (A ``ValueError`` too; the ``tlcore`` command prints it and exits 2.)"""
