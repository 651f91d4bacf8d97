"""tlcore reader plugins for OME-TIFF (``ome-tiff``) and plain TIFF stacks (``tiff``).

The hook objects live in :mod:`tlcore_tiff.reader`; everything else is imported on first use.
"""

__version__ = "0.1.0"
