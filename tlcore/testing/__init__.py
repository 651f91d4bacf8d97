"""The kit for plugin authors: a conformance suite to subclass, the file-access counting it
measures with, and synthetic data.

Importing this module imports pytest; it is meant for test suites only. Its modules are
registered for pytest's assertion rewriting (here, and earlier through the ``pytest11`` entry
point :mod:`tlcore.testing.pytest_plugin`), so a failed check shows the values it compared.
"""

import pytest

# Before the submodules are imported: rewriting applies to modules imported after this (the
# package itself is already importing, so it is named module by module).
pytest.register_assert_rewrite(
    *(f"tlcore.testing.{m}" for m in ("conformance", "chunking", "graph", "pickling", "imports"))
)

from tlcore.testing.conformance import Expected, ReaderConformance  # noqa: E402
from tlcore.testing.iowatch import Watch, fingerprint, watch  # noqa: E402
from tlcore.testing.rules import RULES  # noqa: E402
from tlcore.testing.synthetic import synthetic_timepoint, write_ome_zarr  # noqa: E402

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
