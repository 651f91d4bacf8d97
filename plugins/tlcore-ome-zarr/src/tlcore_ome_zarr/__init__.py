"""tlcore reader plugin for OME-Zarr (OME-NGFF 0.4 and 0.5).

Registered through the ``tlcore.readers`` entry point ``ome-zarr`` -> :mod:`tlcore_ome_zarr.reader`.
"""

__version__ = "0.1.0"
