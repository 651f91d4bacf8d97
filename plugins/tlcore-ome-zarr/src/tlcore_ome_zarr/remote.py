"""The remote read path of OME-Zarr stores: one request per chunk, retried per request.

* No HEAD before a GET: s3fs sizes an object before reading it whole when its
  ``max_concurrency`` is above 1 (it would then split a large object into concurrent ranges);
  zarr chunks are small, so the read path sets ``max_concurrency=1`` (unless the storage
  options set it) and every chunk costs one GET. zarr still reads the chunks of one region
  concurrently (its ``async.concurrency``).
* Retries: botocore's and s3fs's own retries are turned off on this path (where the user kept
  tlcore's defaults) and :func:`tlcore.io.remote.retry_async` retries each read on its own,
  with a jittered backoff: a throttled request waits without holding up the others in flight.

obstore (zarr's ``ObjectStore``) also sends one GET per chunk, but a process forked after its
parent used obstore hangs on its first request (NOTES, "Object storage"), and DataLoader workers
are forked by default: s3fs is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from tlcore import Source
from tlcore.io.remote import RETRIES_OPTION, attempts_for, retry_async
from tlcore.io.source import S3_CONFIG_DEFAULTS


def read_options(source: Source) -> dict[str, Any]:
    """The fsspec options of ``source`` for chunk reads (see the module docstring)."""
    options = source.fsspec_options()
    if source.protocol not in ("s3", "s3a"):
        return options
    options.setdefault("max_concurrency", 1)
    config = dict(options.get("config_kwargs") or {})
    if config.get("retries") == S3_CONFIG_DEFAULTS["retries"]:
        config["retries"] = {"total_max_attempts": 1, "mode": "standard"}
    options["config_kwargs"] = config
    return options


class RemoteStore(WrapperStore[Store]):
    """A remote zarr store whose reads are retried one by one (:func:`retry_async`) and name
    the object in their errors."""

    def __init__(self, store: Store, uri: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(store)
        self.uri = uri
        self.attempts = attempts_for(options or {})

    def _with_store(self, store: Store) -> RemoteStore:
        return type(self)(store, self.uri, {RETRIES_OPTION: self.attempts})

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        fs = getattr(self._store, "fs", None)
        if getattr(fs, "retries", 1) != 1:
            # s3fs retries (its class attribute, not an option) without jitter, inside ours:
            # this filesystem instance serves chunk reads only (its options are the read
            # path's), so its own retries are turned off, in each process.
            fs.retries = 1  # type: ignore[union-attr]
        return await retry_async(
            lambda: self._store.get(key, prototype, byte_range),
            f"reading {self.uri}/{key}",
            self.attempts,
        )

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, r) for key, r in key_ranges)))

    def __repr__(self) -> str:
        return f"RemoteStore({self.uri!r})"
