"""Chunk reads of an S3 store through obstore, in the processes where
:func:`tlcore.io.clients.use_obstore` allows it (DataLoader workers; see that module).

Only storage options with a clean obstore equivalent are mapped (:func:`s3_store_kwargs`);
anything else keeps the store on s3fs, so a read never means something else than it would
through s3fs. obstore's own retries are off: :func:`tlcore.io.remote.retry_async` retries each
read, as on the s3fs path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype

from tlcore.io import clients
from tlcore.io.source import S3_CONFIG_DEFAULTS, is_reader_option

#: ``client_kwargs`` and ``config_kwargs`` keys that map (the retries are tlcore's own).
_CLIENT_KEYS = {"region_name", "endpoint_url"}
_CONFIG_KEYS = set(S3_CONFIG_DEFAULTS)


def s3_store_kwargs(uri: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments of ``obstore.store.S3Store`` that read ``uri`` as s3fs would with
    ``options``, or None where they do not map cleanly (then s3fs reads it).

    Mapped: ``endpoint_url`` (also in ``client_kwargs``), ``key``/``secret``/``token`` (a
    static credential, so no environment variable adds to it), ``anon``, the region
    (``client_kwargs.region_name``, else ``AWS_REGION``/``AWS_DEFAULT_REGION``, else
    us-east-1 where an endpoint is set), the timeouts of ``config_kwargs``. Not mapped (s3fs):
    anything else, credentials from botocore's chain (profiles, instance roles), a bucket
    whose region s3fs would have to find.
    """
    protocol, _, rest = uri.partition("://")
    if protocol not in ("s3", "s3a") or not rest:
        return None
    bucket, _, prefix = rest.partition("/")
    config: dict[str, Any] = {}
    client: dict[str, Any] = {}
    region: str | None = None
    endpoint: str | None = None
    fs = {k: v for k, v in options.items() if not is_reader_option(k)}
    for key, value in fs.items():
        if key in ("key", "secret", "token", "anon", "max_concurrency"):
            continue  # handled below; max_concurrency only tunes s3fs
        if key == "endpoint_url":
            endpoint = str(value)
        elif key == "client_kwargs" and isinstance(value, Mapping):
            if set(value) - _CLIENT_KEYS:
                return None
            region = value.get("region_name") or region
            endpoint = value.get("endpoint_url") or endpoint
        elif key == "config_kwargs" and isinstance(value, Mapping):
            if set(value) - _CONFIG_KEYS:
                return None
            for name in ("connect_timeout", "read_timeout"):  # the same meaning in both
                if value.get(name) is not None:
                    client[name] = f"{float(value[name]):g}s"
        else:
            return None
    if fs.get("anon"):
        config["skip_signature"] = True
        credential = None
    elif fs.get("key") and fs.get("secret"):
        static = {
            "access_key_id": str(fs["key"]),
            "secret_access_key": str(fs["secret"]),
            "token": str(fs["token"]) if fs.get("token") else None,
            "expires_at": None,  # never asked again
        }
        credential = lambda: static  # noqa: E731
    else:
        return None  # botocore's credential chain: s3fs
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None:
        if endpoint is None:
            return None
        region = "us-east-1"
    config["region"] = region
    if endpoint is not None:
        config["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    out: dict[str, Any] = {
        "bucket": bucket,
        "config": config,
        "client_options": client,
        "retry_config": {"max_retries": 0},
    }
    if prefix.strip("/"):
        out["prefix"] = prefix.strip("/")
    if credential is not None:
        out["credential_provider"] = credential
    return out


def open_s3(kwargs: Mapping[str, Any]) -> Any:
    """An ``obstore.store.S3Store`` from :func:`s3_store_kwargs`; marks this process as an
    obstore user (:func:`tlcore.io.clients.note_obstore_use`)."""
    from obstore.store import S3Store

    clients.note_obstore_use()
    kw = dict(kwargs)
    return S3Store(kw.pop("bucket"), **kw)


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
