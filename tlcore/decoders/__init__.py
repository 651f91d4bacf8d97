"""Faster decoders for the one-region read of :mod:`tlcore.lazy.compute`, switched on by
``TLCORE_DECODER``:

* ``tlcore``: tlcore's own reader (:mod:`tlcore.decoders.zarrfast`): the touched chunk files
  (or, on object storage, the chunk objects, fetched in one concurrent batch) are read and
  decoded on a few plain threads per process, each by the numcodecs decoder zarr
  uses, so a damaged chunk fails as in zarr (naming the chunk file, the array and the store); safe
  with the default ``fork`` start method, before or after the parent read anything. Sharded
  arrays are read inner chunk by inner chunk (byte ranges of the shard file). Arrays it does
  not support (filters, other codecs; see
  :func:`tlcore.decoders.zarrfast.unsupported_reason`) read through zarr as usual;
* ``tensorstore``: the region is read by tensorstore (C++, decodes the touched chunks on
  every core) from the same zarr array;
* ``zarrs``: the array is reopened with zarr's ``zarrs`` (Rust) codec pipeline, for that
  array only (zarr's global configuration is left alone).

The names are the libraries that decode. Each applies to readers whose native handle is a
local zarr array (the OME-Zarr plugin's; ``tlcore`` also its remote ones), on every
:meth:`tlcore.lazy.reader.ArrayReader.read` (the one-region read and dask's per-chunk tasks
alike); other readers read as usual.
Decoder handles are cached per reader and checked against the reader's open zarr array, so a
store rewritten in place and opened again is read with its new layout (and a forked child
opens its own). Neither tensorstore nor zarrs survives ``fork`` once it has been used: a
process forked from one that used them (a DataLoader worker with the default start method,
after the parent read a crop) silently reads through the plugin instead, with one warning. So
with those two: set ``multiprocessing_context="spawn"`` (or ``"forkserver"``) on the
datamodule.

An unset ``TLCORE_DECODER`` (or ``default``) means :data:`DEFAULT_DECODER`, ``tlcore``: it
is exact (zarr's bytes where zarr reads a chunk, an error where zarr raises; tested against
zarr on random intact and damaged stores) and fork-safe, and reads a random crop faster than
zarr (docs/performance.md). ``TLCORE_DECODER=zarr``
(or ``none``) reads through the plugin's zarr array, as tlcore did before.
"""

from __future__ import annotations

from tlcore.decoders.select import (
    DECODER_ENV,
    DECODERS,
    DEFAULT_DECODER,
    FORK_SAFE,
    handle_for,
    requested,
)

__all__ = ["DECODER_ENV", "DECODERS", "DEFAULT_DECODER", "FORK_SAFE", "handle_for", "requested"]
