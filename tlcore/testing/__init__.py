"""The kit for plugin authors: a conformance suite to subclass, and synthetic data.

Importing this module imports pytest; it is meant for test suites only.
"""

from tlcore.testing.conformance import Expected, ReaderConformance
from tlcore.testing.synthetic import synthetic_timepoint, write_ome_zarr

__all__ = ["Expected", "ReaderConformance", "synthetic_timepoint", "write_ome_zarr"]
