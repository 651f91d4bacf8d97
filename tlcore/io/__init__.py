"""Where bytes come from: :class:`~tlcore.io.source.Source` (a local path or an fsspec URL with
its storage options), :mod:`~tlcore.io.remote` (retries, and the shared local cache of remote
files for readers that read local files only) and :mod:`~tlcore.io.prefetch` (the bounded
per-process cache of encoded bytes fetched ahead of the reads that need them)."""

from tlcore.io.prefetch import AheadCache, AheadStats

__all__ = ["AheadCache", "AheadStats"]
