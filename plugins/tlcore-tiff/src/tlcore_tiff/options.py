"""The per-file options this plugin reads from ``Source.storage_options``.

The hooks receive only (source, scene, level), so a per-file option travels with the source:
``tlcore.open_lazy(path, storage_options={"tiff_dims": "TYX"})``, or the ``storage_options``
column of a manifest. Keys starting with ``tiff_`` belong to this plugin and are removed before
the rest go to fsspec (credentials, ``endpoint_url``...). Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "tiff_"
#: Names every axis of the TIFF series, outermost first (e.g. "TYX", "ZCYX", "TYXS").
DIMS_KEY = "tiff_dims"

_ALLOWED = set("TCZYXS")


class OptionError(ValueError):
    """A ``tiff_*`` storage option is malformed."""


def fsspec_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The storage options meant for fsspec: everything but this plugin's own keys."""
    return {k: v for k, v in options.items() if not str(k).startswith(PREFIX)}


def dims_override(options: Mapping[str, Any], uri: str) -> str | None:
    """The validated ``tiff_dims`` option in upper case, or None when not given.

    Only the letters' syntax is checked here; whether they fit the file's series is checked
    against the series shape when the file is opened.
    """
    unknown = [k for k in options if str(k).startswith(PREFIX) and k != DIMS_KEY]
    if unknown:
        raise OptionError(
            f"{uri}: unknown storage option(s) {sorted(unknown)} for the TIFF readers; the only "
            f"one is {DIMS_KEY!r} (for example {{'{DIMS_KEY}': 'TYX'}})"
        )
    value = options.get(DIMS_KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OptionError(f"{uri}: {DIMS_KEY} must be a string such as 'TYX', got {value!r}")
    dims = value.strip().upper()
    bad = sorted(set(dims) - _ALLOWED)
    if bad or len(set(dims)) != len(dims) or "Y" not in dims or "X" not in dims:
        raise OptionError(
            f"{uri}: {DIMS_KEY}={value!r} must name each axis of the TIFF series once, outermost "
            "first, with letters from T, C, Z, Y, X and S (RGB samples), including Y and X "
            "(for example 'TYX' for a stack of timepoints, 'ZYX' for a Z-stack, 'TCYX')"
        )
    return dims
