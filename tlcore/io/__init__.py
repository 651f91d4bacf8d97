"""Where bytes come from: :class:`~tlcore.io.source.Source` (a local path or an fsspec URL with
its storage options) and :mod:`~tlcore.io.remote` (retries, and the shared local cache of
remote files for readers that read local files only)."""
