"""S3 reads through obstore, in the processes where :func:`tlcore.io.clients.use_obstore`
allows it (DataLoader workers; see that module), for every format's remote reads: zarr chunk
objects (``tlcore_ome_zarr``) and byte ranges of single files (TIFF tiles and strips).

Only storage options with a clean obstore equivalent are mapped (:func:`s3_store_kwargs`);
anything else keeps the reads on s3fs, so a read never means something else than it would
through s3fs. obstore's own retries are off: :func:`tlcore.io.remote.retry_async` retries each
request on its own, as on the s3fs path.

obstore is on trial in each process, for each store, until it has served one read
(:class:`Trial`): a first read that fails in a way s3fs may not (a bucket in another region
than the one configured, which obstore cannot follow; a signing or addressing difference) is
read again through s3fs, and when s3fs reads it, the process keeps s3fs for that store and logs
a warning once. A missing object, throttling and failures of the network or the store (5xx,
timeouts, refused connections) are not such failures: they are obstore's to retry.

Why obstore: its client costs about a third of s3fs's CPU per request (botocore's request
building, signing and response parsing are Python in s3fs, Rust in obstore), and on the 2-core
machines of ``tlcore bench cloud`` the loader is CPU-bound. Reading six ranges of 1.6 MB of one
object in one call cost 19 ms of CPU through s3fs's ``cat_ranges`` and 8 ms through
:func:`cat_ranges` here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from tlcore.io import clients
from tlcore.io.remote import attempts_for, is_throttled, retry_async
from tlcore.io.source import S3_CONFIG_DEFAULTS, is_reader_option

__all__ = [
    "ObstoreDoubt",
    "Trial",
    "cat_ranges",
    "file_store",
    "open_s3",
    "run",
    "s3_store_kwargs",
    "store_for",
    "trial_for",
]

T = TypeVar("T")
log = logging.getLogger("tlcore")

#: Words of obstore's errors for failures of the network or the store, which s3fs would meet
#: too (obstore raises them all as ``GenericError``; only the text tells them apart).
_TRANSIENT_WORDS = ("error sending request", "timed out", "timeout", "connection",
                    "non-2xx status code: 5", "broken pipe", "reset by peer", "incomplete",
                    "unexpected eof")  # fmt: skip


def may_be_obstore_only(exc: BaseException) -> bool:
    """Whether s3fs might read what obstore failed to: not a missing object, not throttling,
    not a failure of the network or the store (see the module docstring)."""
    if isinstance(exc, FileNotFoundError) or is_throttled(exc):
        return False
    # the first line: obstore appends a debug dump (with "retry_timeout" in it) to every error
    text = str(exc).strip().split("\n", 1)[0].lower()
    return not any(word in text for word in _TRANSIENT_WORDS)


class ObstoreDoubt(Exception):
    """obstore failed the first read of a store in a way s3fs may not (see :class:`Trial`):
    the caller reads it again through s3fs. Never retried (``retryable``)."""

    retryable = False


class Trial:
    """obstore's standing for one store in one process: on trial until one read succeeds
    (one per store and process: :func:`trial_for`).

    :meth:`check` turns a failure of a read into :class:`ObstoreDoubt` while on trial, when
    s3fs might read it (:func:`may_be_obstore_only`); :meth:`abandon` records that s3fs did
    (the callers then read the store through s3fs for the rest of the process)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.proven = False
        self.abandoned = False

    def passed(self) -> None:
        self.proven = True

    def check(self, exc: BaseException) -> BaseException:
        """The error to raise for ``exc``: an :class:`ObstoreDoubt` while on trial and the
        failure may be obstore's own, else ``exc``."""
        if not self.proven and may_be_obstore_only(exc):
            return ObstoreDoubt(f"{self.uri}: {type(exc).__name__}: {exc}")
        return exc

    def fail(self, exc: BaseException) -> NoReturn:
        """Raise for a read that failed with ``exc``: :meth:`check`'s doubt, chained to
        ``exc``, or ``exc`` itself with its own cause (``raise check(exc) from exc`` would make
        ``exc`` its own cause and drop the client's error it was raised from)."""
        doubt = self.check(exc)
        if doubt is exc:
            raise exc
        raise doubt from exc

    def abandon(self, doubt: BaseException) -> None:
        """s3fs read what obstore could not: warn once."""
        with _trials_lock:
            first, self.abandoned = not self.abandoned, True
        if first:
            reason = str(doubt).split("\n", 1)[0][:300]
            log.warning(
                "obstore could not read %s where s3fs can (%s); this process reads it through "
                "s3fs from now on (TLCORE_S3_CLIENT=s3fs skips the attempt)",
                self.uri,
                reason,
            )


#: ``client_kwargs`` and ``config_kwargs`` keys that map (the retries are tlcore's own).
_CLIENT_KEYS = {"region_name", "endpoint_url"}
_CONFIG_KEYS = set(S3_CONFIG_DEFAULTS)


def s3_store_kwargs(uri: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The keyword arguments of ``obstore.store.S3Store`` that read ``uri`` (a bucket and an
    optional prefix) as s3fs would with ``options``, or None where they do not map cleanly
    (then s3fs reads it).

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


def store_for(uri: str, options: Mapping[str, Any]) -> tuple[Any, Trial] | None:
    """This process's obstore store rooted at ``uri`` (a bucket and an optional prefix, e.g. a
    zarr store's root) and obstore's :class:`Trial` for it, or None where s3fs reads it:
    obstore is not allowed here (:func:`tlcore.io.clients.use_obstore`), the options do not map
    (:func:`s3_store_kwargs`), or obstore already failed a read of ``uri`` that s3fs served.

    Raises:
        ImportError: ``TLCORE_S3_CLIENT=obstore`` and obstore is not installed.
    """
    return _opened(uri, uri, options)


def file_store(uri: str, options: Mapping[str, Any]) -> tuple[Any, str, Trial] | None:
    """``(store, key, trial)`` to read the single object ``uri`` through obstore in this
    process (a store of its bucket, its key, obstore's :class:`Trial` for ``uri``), or None
    where s3fs reads it (as :func:`store_for`).

    Raises:
        ImportError: ``TLCORE_S3_CLIENT=obstore`` and obstore is not installed.
    """
    protocol, _, rest = uri.partition("://")
    bucket, _, key = rest.partition("/")
    if not key:
        return None
    found = _opened(f"{protocol}://{bucket}", uri, options)
    return None if found is None else (found[0], key, found[1])


def _opened(root: str, tried: str, options: Mapping[str, Any]) -> tuple[Any, Trial] | None:
    """An obstore store rooted at ``root`` and the trial of ``tried`` (what its reads read)."""
    if not clients.use_obstore():
        return None
    trial = trial_for(tried)
    kwargs = None if trial.abandoned else s3_store_kwargs(root, options)
    return None if kwargs is None else (open_s3(kwargs), trial)


_trials: dict[str, Trial] = {}
_trials_pid = 0
_trials_lock = threading.Lock()


def trial_for(uri: str) -> Trial:
    """This process's :class:`Trial` of obstore for the store or file ``uri`` (shared by every
    reader of it in the process; a forked child starts its own)."""
    global _trials, _trials_pid
    with _trials_lock:
        if _trials_pid != os.getpid():
            _trials, _trials_pid = {}, os.getpid()
        found = _trials.get(uri)
        if found is None:
            found = _trials[uri] = Trial(uri)
        return found


# -- one event loop per process, for the synchronous callers -------------------------------------
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _running_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():  # a forked child starts its own
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="tlcore-objstore", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on this process's obstore event loop and return its result (blocking).

    A loop that outlives the call, rather than ``asyncio.run`` per call: obstore's requests
    complete on its own runtime and hand their results to the loop that awaited them, which
    must still be running then."""
    return asyncio.run_coroutine_threadsafe(coro, _running_loop()).result()


async def _range(
    store: Any, key: str, start: int, end: int, what: str, attempts: int, trial: Trial | None
) -> Any:
    import obstore as obs
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    async def once() -> Any:
        try:
            try:
                found = await obs.get_range_async(store, key, start=start, end=end)
            except (PermissionDeniedError, UnauthenticatedError) as exc:
                raise PermissionError(f"{what}: {exc}") from exc
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{what}: the object does not exist") from exc
        except Exception as exc:
            if trial is None:
                raise
            trial.fail(exc)
        if trial is not None:
            trial.passed()
        return found

    return await retry_async(once, f"{what} bytes {start}-{end}", attempts)


def cat_ranges(
    store: Any,
    key: str,
    starts: Sequence[int],
    ends: Sequence[int],
    *,
    uri: str,
    options: Mapping[str, Any],
    trial: Trial | None = None,
) -> list[Any]:
    """The bytes ``start:end`` of object ``key`` for each pair, all requests in flight at once
    (each retried on its own, ``tlcore_retries`` attempts), as fsspec's ``cat_ranges`` with
    ``on_error="return"``: an exception in place of the bytes of a range that failed (a
    missing object, a refused permission, or :class:`tlcore.io.remote.RemoteError` after the
    retries; with ``trial``, an :class:`ObstoreDoubt` for a failure s3fs might not share).
    ``uri`` names the object in those errors.

    Ranges are requested exactly as given (obstore's own ``get_ranges`` would merge ranges up
    to 1 MiB apart, fetching bytes the caller chose not to)."""
    attempts = attempts_for(options)

    async def gather() -> list[Any]:
        return await asyncio.gather(
            *(_range(store, key, a, b, uri, attempts, trial) for a, b in zip(starts, ends)),
            return_exceptions=True,
        )

    return [d if isinstance(d, BaseException) else memoryview(d) for d in run(gather())]
