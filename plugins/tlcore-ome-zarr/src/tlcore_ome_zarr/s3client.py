"""Chunk reads of an S3 store through obstore, as zarr's store API asks for them: the store is
built by :mod:`tlcore.io.objstore` (which decides where obstore is used and how storage options
map), and :func:`get` is one read in zarr's terms (buffers, byte requests, None for absent).
"""

from __future__ import annotations

from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype


async def get(
    store: Any, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None
) -> Buffer | None:
    """One read, as zarr's ``ObjectStore.get``: None for a missing object (zarr's "absent"),
    a ``PermissionError`` for refused access; other errors are raised for the caller's
    retries."""
    import obstore as obs
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    try:
        if byte_range is None:
            resp = await obs.get_async(store, key)
            return prototype.buffer.from_bytes(await resp.bytes_async())
        if isinstance(byte_range, RangeByteRequest):
            data = await obs.get_range_async(store, key, start=byte_range.start, end=byte_range.end)
            return prototype.buffer.from_bytes(data)
        if isinstance(byte_range, OffsetByteRequest):
            resp = await obs.get_async(store, key, options={"range": {"offset": byte_range.offset}})
        elif isinstance(byte_range, SuffixByteRequest):
            resp = await obs.get_async(store, key, options={"range": {"suffix": byte_range.suffix}})
        else:
            raise TypeError(f"unexpected byte range {byte_range!r}")
        return prototype.buffer.from_bytes(await resp.bytes_async())
    except FileNotFoundError:
        return None
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        raise PermissionError(f"{key}: {exc}") from exc
