"""The plugin author's toolkit: a lazy TCZYX array over stored pixels, and reading it at the
decompression floor.

* :mod:`~tlcore.lazy.reader`: :class:`ArrayReader` (what a plugin subclasses);
* :mod:`~tlcore.lazy.daskarray`: :func:`as_dask` (the dask array every reader builds on), and
  the dask optimisation that reads a plain ``.compute()`` of its crops as one region;
* :mod:`~tlcore.lazy.regions`: selections turned into the fewest region reads, and
  :class:`~tlcore.lazy.regions.ReaderView`, one sample's view of a reader;
* :mod:`~tlcore.lazy.array`: :class:`~tlcore.lazy.array.LazyArray`, a sample's dask array that
  knows its crop box;
* :mod:`~tlcore.lazy.compute`: :func:`~tlcore.lazy.compute.compute`, a crop read as one region;
* :mod:`~tlcore.lazy.chunkcache`: the decoded-chunk cache and counted read amplification;
* :mod:`~tlcore.lazy.cpu`: the cores a process may decode on (its share under DataLoader
  workers).

Nothing here imports torch, MONAI or a format library.
"""

from __future__ import annotations

from tlcore.lazy.daskarray import as_dask
from tlcore.lazy.reader import (
    ArrayReader,
    ReadStats,
    Region,
    expand_index,
    read_stats,
    reader_of,
    split_index,
)

__all__ = [
    "ArrayReader",
    "ReadStats",
    "Region",
    "as_dask",
    "expand_index",
    "read_stats",
    "reader_of",
    "split_index",
]
