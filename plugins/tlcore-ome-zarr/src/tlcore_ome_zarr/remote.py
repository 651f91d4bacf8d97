"""The remote read path of OME-Zarr stores: one request per chunk, retried per request.

* No HEAD before a GET: s3fs sizes an object before reading it whole when its
  ``max_concurrency`` is above 1 (it would then split a large object into concurrent ranges);
  zarr chunks are small, so the read path sets ``max_concurrency=1`` (unless the storage
  options set it) and every chunk costs one GET. zarr still reads the chunks of one region
  concurrently (its ``async.concurrency``).
* Retries: botocore's and s3fs's own retries are turned off on this path (where the user kept
  tlcore's defaults) and :func:`tlcore.io.remote.retry_async` retries each read on its own,
  with a jittered backoff: a throttled request waits without holding up the others in flight.

* The client: s3fs, except in DataLoader workers where ``TLCORE_S3_CLIENT`` (``auto``, the
  default, or ``obstore``) and :func:`tlcore.io.clients.use_obstore` allow obstore (about a
  third of s3fs's CPU per GET; a process forked after its parent used obstore hangs, so the
  parent never does). Decided per process at the first read; the storage options must map
  (:func:`tlcore.io.objstore.s3_store_kwargs`), else s3fs. A first read that obstore fails where
  s3fs may not (a bucket in another region than the configured one) is read through s3fs, which
  then reads the store for the rest of the process (:class:`tlcore.io.objstore.Trial`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from tlcore import Source
from tlcore.io import objstore
from tlcore.io import prefetch as ahead
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
        self.options = dict(options or {})
        self.attempts = attempts_for(self.options)
        self._obs: Any = None  # this process's obstore S3Store, or False: s3fs here
        self._obs_pid = 0
        self._trial: Any = None  # obstore's standing here (tlcore.io.objstore.Trial)

    def _with_store(self, store: Store) -> RemoteStore:
        return type(self)(store, self.uri, {**self.options, RETRIES_OPTION: self.attempts})

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_obs"], state["_obs_pid"] = None, 0  # decided again in each process
        state["_trial"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _obstore(self) -> Any:
        """This process's obstore store for chunk reads, or None (s3fs reads them)."""
        if self._obs_pid != os.getpid():  # decided once per process (a fork decides again)
            # may raise (asked for obstore, not installed)
            found = objstore.store_for(self.uri, self.options)
            self._obs, self._trial = found if found is not None else (False, None)
            self._obs_pid = os.getpid()
        return self._obs or None

    async def _read(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        """One attempt at one read, through this process's client."""
        store = self._obstore()
        if store is not None:
            from tlcore_ome_zarr.s3client import get

            try:
                found = await get(store, key, prototype, byte_range)
            except Exception as exc:
                self._trial.fail(exc)
            self._trial.passed()
            return found
        return await self._fs_read(key, prototype, byte_range)

    async def _fs_read(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        self._no_fs_retries()
        return await self._store.get(key, prototype, byte_range)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        cache = ahead.active()
        if cache is not None and byte_range is None:
            # Fetched ahead (tlcore.io.prefetch): the same bytes, without the round trip; a
            # fetch of this object in flight is awaited instead of sending a second request.
            found, data = await cache.lookup_async(f"{self.uri}/{key}")
            if found:
                return None if data is None else prototype.buffer.from_bytes(data)
        self._obstore()  # the client is chosen outside the retries: a refusal is not retried
        what = f"reading {self.uri}/{key}"
        try:
            return await retry_async(
                lambda: self._read(key, prototype, byte_range), what, self.attempts
            )
        except objstore.ObstoreDoubt as doubt:  # obstore failed where s3fs may not: s3fs's answer
            read = await retry_async(
                lambda: self._fs_read(key, prototype, byte_range), what, self.attempts
            )
            self._trial.abandon(doubt)
            self._obs = False  # s3fs reads this store in this process from now on
            return read

    def fetch_objects(self, keys: Sequence[str]) -> list[Any]:
        """The whole objects ``keys``, fetched concurrently on zarr's event loop (each through
        :meth:`get`: the prefetch cache first, then one retried request), as uint8 arrays, None
        for an object that does not exist. tlcore's decoder reads remote arrays through this
        (:class:`tlcore.decoders.zarrfast.layout.ObjectSource`)."""
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        proto = default_buffer_prototype()
        found: dict[str, Buffer | None] = {}
        cache = ahead.active()
        if cache is not None:
            # Objects fetched ahead are taken here: when all are (the usual case once the
            # prefetch runs ahead), the read makes no trip through zarr's event loop thread.
            for key in keys:
                held, data = cache.lookup_now(f"{self.uri}/{key}")
                if held:
                    found[key] = None if data is None else proto.buffer.from_bytes(data)
        missing = [key for key in dict.fromkeys(keys) if key not in found]

        async def every() -> list[Buffer | None]:
            return list(await asyncio.gather(*(self.get(key, proto) for key in missing)))

        if missing:
            found.update(zip(missing, sync(every())))
        return [None if (buf := found[key]) is None else buf.as_numpy_array() for key in keys]

    def _no_fs_retries(self) -> None:
        fs = getattr(self._store, "fs", None)
        if getattr(fs, "retries", 1) != 1:
            # s3fs retries (its class attribute, not an option) without jitter, inside ours:
            # this filesystem instance serves chunk reads only (its options are the read
            # path's), so its own retries are turned off, in each process.
            fs.retries = 1  # type: ignore[union-attr]

    def prefetch(self, keys: Sequence[str], until: int, lane: int = 0) -> None:
        """Fetch the whole objects ``keys`` concurrently into this process's
        :mod:`tlcore.io.prefetch` cache, kept until sample ``until`` (of ``lane``) is done;
        blocks until they are in. Objects held or in flight are not fetched again. One attempt
        each: a failure only means the read makes its own request (with its retries, and its
        error)."""
        cache = ahead.active()
        if cache is None:
            return
        claimed = [(k, f) for k in keys if (f := cache.claim(f"{self.uri}/{k}", until, lane))]
        if not claimed:
            return
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        proto = default_buffer_prototype()

        async def one(key: str) -> None:
            name = f"{self.uri}/{key}"
            try:
                found = await self._read(key, proto)
            except Exception:
                cache.fill(name, None, ok=False)
                return
            # The client's buffer itself (read-only), not a 3 MiB copy per chunk object.
            cache.fill(name, None if found is None else found.as_numpy_array())

        async def every() -> None:
            await asyncio.gather(*(one(k) for k, _ in claimed))

        try:  # zarr's event loop: the one the store's connections belong to
            sync(every())
        finally:
            for key, future in claimed:  # never leave a read waiting on a fetch that died
                if not future.done():
                    cache.fill(f"{self.uri}/{key}", None, ok=False)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, r) for key, r in key_ranges)))

    def __repr__(self) -> str:
        return f"RemoteStore({self.uri!r})"


def prefetch_regions(
    array: Any, native_dims: str, regions: Sequence[Sequence[slice]], until: int, lane: int = 0
) -> None:
    """Fetch ahead the stored objects (chunks) of ``array`` (a ``zarr.Array`` over a
    :class:`RemoteStore`) that the TCZYX ``regions`` touch; ``native_dims`` names the array's
    axes. Nothing for a local store or a sharded array (its reads are byte ranges of a
    shard, after its index)."""
    store = array.store_path.store
    if not isinstance(store, RemoteStore) or array.shards is not None:
        return
    dims = "TCZYX"
    chunks, path = array.chunks, array.store_path.path
    keys: dict[str, None] = {}
    for region in regions:
        by_dim = dict(zip(dims, region))
        spans = [
            range(by_dim[d].start // c, (by_dim[d].stop - 1) // c + 1)
            for d, c in zip(native_dims, chunks)
        ]
        for coords in itertools.product(*spans):
            key = array.metadata.encode_chunk_key(tuple(coords))
            keys[f"{path}/{key}" if path else key] = None
    store.prefetch(list(keys), until, lane)
