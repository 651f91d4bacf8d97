"""Where bytes come from: :class:`~tlcore.io.source.Source` (a local path or an fsspec URL with
its storage options), :mod:`~tlcore.io.remote` (retries, and the shared local cache of remote
files for readers that read local files only), :mod:`~tlcore.io.prefetch` (the bounded
per-process cache of encoded bytes fetched ahead of the reads that need them),
:mod:`~tlcore.io.clients` and :mod:`~tlcore.io.objstore` (which S3 client a process reads
with, and obstore's reads)."""

from tlcore.io.prefetch import AheadCache, AheadStats

__all__ = ["AheadCache", "AheadStats"]
