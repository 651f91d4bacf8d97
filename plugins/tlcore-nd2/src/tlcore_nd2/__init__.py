"""tlcore reader plugin for Nikon ND2 files, built directly on the ``nd2`` library.

Registered through the ``tlcore.readers`` entry point ``nd2`` -> :mod:`tlcore_nd2.reader`.
"""

__version__ = "0.1.0"
