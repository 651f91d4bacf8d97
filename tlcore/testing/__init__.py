"""The kit for plugin authors: a conformance suite to subclass, the file-access counting it
measures with, and synthetic data.

Meant for test suites: the conformance suite imports pytest. Names load on first use, so the
``pytest11`` entry point :mod:`tlcore.testing.pytest_plugin` stays cheap. The kit's modules are
registered for pytest's assertion rewriting before any of them is imported (here, and earlier
through that entry point), so a failed check shows the values it compared.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pytest

MODULES = (
    "conformance", "expected", "kitbase", "rules_discovery", "rules_metadata", "rules_image",
    "rules_pixels", "chunking", "graph", "pickling", "imports", "iowatch", "rules",
)  # fmt: skip
pytest.register_assert_rewrite(*(f"tlcore.testing.{m}" for m in MODULES))

if TYPE_CHECKING:
    from tlcore.testing.conformance import Expected, ReaderConformance
    from tlcore.testing.iowatch import Watch, fingerprint, watch
    from tlcore.testing.rules import RULES
    from tlcore.testing.synthetic import synthetic_timepoint, write_ome_zarr

_WHERE = {
    "Expected": "conformance",
    "ReaderConformance": "conformance",
    "Watch": "iowatch",
    "fingerprint": "iowatch",
    "watch": "iowatch",
    "RULES": "rules",
    "synthetic_timepoint": "synthetic",
    "write_ome_zarr": "synthetic",
}

__all__ = [
    "RULES",
    "Expected",
    "ReaderConformance",
    "Watch",
    "fingerprint",
    "synthetic_timepoint",
    "watch",
    "write_ome_zarr",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tlcore.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tlcore.testing.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
