"""tlcore reader plugin for Zeiss CZI files.

Registered through the ``tlcore.readers`` entry point ``czi`` -> :mod:`tlcore_czi.reader`.
"""

__version__ = "0.1.0"
