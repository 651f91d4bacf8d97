"""Exceptions and warnings tlcore raises. Every message names the file and says what to do."""

from __future__ import annotations


class TlcoreError(Exception):
    """Base class of tlcore's own errors."""


class NoReaderError(TlcoreError, ValueError):
    """No installed reader can open a source (or the requested reader is not installed)."""


class SceneNotFoundError(TlcoreError, LookupError):
    """The requested scene is not in the file."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else ""


class LevelNotFoundError(TlcoreError, LookupError):
    """The requested resolution level is not in the scene."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReaderError(TlcoreError):
    """A reader plugin failed on a source it had accepted, or broke the hook contract.

    The original exception is chained as ``__cause__``.
    """


class PluginLoadWarning(UserWarning):
    """A reader plugin could not be loaded; the other readers keep working."""
