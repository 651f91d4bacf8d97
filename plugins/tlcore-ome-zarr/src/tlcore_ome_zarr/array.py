"""A zarr array seen in T, C, Z, Y, X order, opened lazily and read-only."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from tlcore import DIMS, Source
from tlcore.lazy import ArrayReader, Region
from tlcore_ome_zarr.scene import ArrayMeta, open_array


class ZarrArrayReader(ArrayReader):
    """Reads TCZYX regions of one zarr array whose native axes are a subset of TCZYX.

    A region becomes one ``zarr.Array.__getitem__`` call, so zarr decodes exactly the chunks the
    region touches (concurrently), then the result is transposed and given size-1 axes.
    """

    def __init__(self, source: Source, meta: ArrayMeta, native_dims: str) -> None:
        self.source = source
        self.path = meta.path
        self.metadata = meta.metadata  # opening again (in a worker) reads nothing
        self.native_dims = native_dims
        sizes = dict(zip(native_dims, meta.shape))
        chunks = dict(zip(native_dims, meta.chunks))
        super().__init__(
            shape=[sizes.get(d, 1) for d in DIMS],
            dtype=meta.dtype,
            chunks=[chunks.get(d, 1) for d in DIMS],
        )
        # Native axes sorted into TCZYX order: the transpose that reorders a native block.
        order = sorted(range(len(native_dims)), key=lambda i: DIMS.index(native_dims[i]))
        self._transpose = tuple(order) if order != sorted(order) else None

    def identity(self) -> tuple[Any, ...]:
        return (self.source.key, self.path)

    def decoder_handle(self) -> Any | None:
        # tlcore's own decoder (or TLCORE_DECODER's) reads the arrays it supports faster
        # than zarr (local sharded arrays and remote stores included: RemoteStore fetches
        # the chunk objects for it); it answers None for the rest (other codecs, remote
        # shards), read by zarr.
        from tlcore.decoders import handle_for

        return handle_for(self)

    def prefetch(self, regions: Any, until: int, lane: int = 0) -> None:
        """Fetch the encoded chunks of ``regions`` (TCZYX boxes) into the process's
        :mod:`tlcore.io.prefetch` cache, ahead of their reads (remote stores only)."""
        from tlcore_ome_zarr.remote import prefetch_regions

        prefetch_regions(self.handle, self.native_dims, regions, until, lane)

    def _open(self) -> zarr.Array[Any]:
        return open_array(self.source, self.path, self.metadata)

    def _read(self, handle: zarr.Array[Any], region: Region) -> np.ndarray:
        by_dim = dict(zip(DIMS, region))
        block = np.asarray(handle[tuple(by_dim[d] for d in self.native_dims)])
        if self._transpose is not None:
            block = block.transpose(self._transpose)
        return block.reshape(tuple(s.stop - s.start for s in region))
