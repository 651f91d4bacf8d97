"""Local copies of remote files, for readers that need a local path (ND2, CZI, LIF).

:func:`local_copy` fetches a remote file once into a shared cache folder and returns its local
path. The contract:

* One download per file version, however many threads, DataLoader workers or processes (on one
  machine, or on several sharing the folder over a file system with working ``flock``) ask for
  it: the downloader holds an exclusive lock on ``<file>.lock``; the others wait, then find the
  finished copy.
* No half-written file is ever read: the download goes to a temporary name in the same folder,
  its size is checked against the remote size, and it is renamed into place (atomic).
* A file changed remotely is fetched again: the cache key is the URL plus the object's version
  (ETag, else modification time) and size. Copies are made read-only.
* A download that lasts over half a second shows a progress bar on stderr when stderr is a
  terminal (:mod:`tlcore.progress`; ``TLCORE_PROGRESS=0`` turns it off).
* Transient errors (dropped connections, 5xx, timeouts) are retried with exponential backoff
  (:func:`retry`); a missing file or a refused permission is not. Past the limit, a
  :class:`RemoteError` names the URL, never the credentials.

The cache folder is, first found: the ``tlcore_cache_dir`` storage option, the
``TLCORE_CACHE_DIR`` environment variable, ``$XDG_CACHE_HOME/tlcore/remote``,
``~/.cache/tlcore/remote``. tlcore never deletes from it: clear it with ``rm -r``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tlcore.errors import TlcoreError
from tlcore.io.source import Source
from tlcore.progress import Bar

CACHE_ENV = "TLCORE_CACHE_DIR"
CACHE_OPTION = "tlcore_cache_dir"
RETRIES_OPTION = "tlcore_retries"
#: Attempts for a remote operation before :class:`RemoteError` (storage option
#: ``tlcore_retries`` overrides it).
DEFAULT_ATTEMPTS = 4
#: First backoff delay in seconds; doubled after each failed attempt.
BACKOFF_S = 0.5
#: Name of the log, in each cached file's folder, that gets one line per download.
FETCH_LOG = "fetches.jsonl"
#: Seconds a download lasts before its progress bar shows (on a terminal only).
PROGRESS_DELAY_S = 0.5

log = logging.getLogger(__name__)
T = TypeVar("T")

_memo: dict[Any, Path] = {}
_memo_lock = threading.Lock()


class RemoteError(TlcoreError, OSError):
    """A remote file could not be read or fetched after retries. Names the URL, never the
    credentials; the original exception is chained as ``__cause__``."""


def cache_dir(options: Mapping[str, Any] | None = None) -> Path:
    """The folder of local copies (see the module docstring for the order of precedence)."""
    chosen = (options or {}).get(CACHE_OPTION) or os.environ.get(CACHE_ENV)
    if chosen:
        return Path(os.path.expanduser(str(chosen)))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tlcore" / "remote"


def is_permanent(exc: BaseException) -> bool:
    """Errors that retrying cannot fix: a missing object or bucket, refused access, missing
    credentials, a bad argument, or an error that says so itself (``retryable = False``)."""
    if getattr(exc, "retryable", True) is False:
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return True
    if isinstance(exc, (TypeError, ValueError, KeyError)) and not isinstance(exc, OSError):
        return True
    name = type(exc).__name__
    return name in ("NoCredentialsError", "PartialCredentialsError", "InvalidConfigError")


def retry(
    action: Callable[[], T],
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff_s: float = BACKOFF_S,
) -> T:
    """Run ``action``, retrying transient errors with exponential backoff.

    Permanent errors (:func:`is_permanent`) are raised at once, unchanged (a
    ``FileNotFoundError`` stays one). After ``attempts`` transient failures, raises
    :class:`RemoteError` saying ``what`` failed, how often, and the last cause.
    """
    delay = backoff_s
    for attempt in range(1, max(attempts, 1) + 1):
        try:
            return action()
        except Exception as exc:
            if is_permanent(exc):
                raise
            if attempt >= attempts:
                raise RemoteError(
                    f"{what} failed after {attempts} attempt(s): {type(exc).__name__}: {exc}. "
                    "Check the endpoint and the network; raise the limit with the storage "
                    f"option {RETRIES_OPTION}=N"
                ) from exc
            log.warning(
                "%s failed (attempt %d of %d: %s); retrying in %.1f s",
                what,
                attempt,
                attempts,
                type(exc).__name__,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


#: Attempts for one read that the store throttles (503 SlowDown, 429) before giving up.
THROTTLE_ATTEMPTS = 10
#: Backoff of the per-request retries (:func:`retry_async`): the n-th wait is drawn uniformly
#: in ``[0, min(CAP, BASE * 2**n)]`` ("full jitter"), so throttled requests spread out instead
#: of coming back together.
REQUEST_BACKOFF_S = 0.05
REQUEST_BACKOFF_CAP_S = 5.0
_THROTTLE_WORDS = ("slowdown", "slow down", "reduce your request rate", "toomanyrequests",
                   "too many requests", "throttl", "service unavailable")  # fmt: skip


def is_throttled(exc: BaseException) -> bool:
    """Whether ``exc`` is the store asking to slow down (503 SlowDown, 429, throttling)."""
    seen: BaseException | None = exc
    for _ in range(4):  # s3fs and zarr wrap botocore's error; look a few causes down
        if seen is None:
            break
        response = getattr(seen, "response", None)
        if isinstance(response, Mapping):  # botocore's ClientError
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (429, 503):
                return True
        text = f"{type(seen).__name__} {seen}".lower()
        if any(word in text for word in _THROTTLE_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def jittered(attempt: int) -> float:
    """The wait before retry number ``attempt`` (0-based) of one request (full jitter)."""
    return random.uniform(0.0, min(REQUEST_BACKOFF_CAP_S, REQUEST_BACKOFF_S * 2**attempt))


async def retry_async(
    action: Callable[[], Awaitable[T]],
    what: str,
    attempts: int = DEFAULT_ATTEMPTS,
    throttle_attempts: int = THROTTLE_ATTEMPTS,
) -> T:
    """Await ``action()``, retrying one request on its own: the other requests in flight keep
    going while this one waits (``asyncio.sleep``).

    Throttling (:func:`is_throttled`) is retried up to ``throttle_attempts`` times and other
    transient errors (5xx, dropped connections, timeouts) up to ``attempts`` times, each after
    a jittered wait (:func:`jittered`); permanent errors (:func:`is_permanent`) are raised at
    once. Past the limit, raises :class:`RemoteError` naming ``what``.
    """
    throttles = failures = 0
    while True:
        try:
            return await action()
        except Exception as exc:
            if is_permanent(exc):
                raise
            if is_throttled(exc):
                throttles += 1
                spent, limit = throttles, throttle_attempts
            else:
                failures += 1
                spent, limit = failures, attempts
            if spent >= limit:
                raise RemoteError(
                    f"{what} failed after {spent} attempt(s): {type(exc).__name__}: {exc}. "
                    "Check the endpoint and the network; raise the limit with the storage "
                    f"option {RETRIES_OPTION}=N"
                ) from exc
            await asyncio.sleep(jittered(throttles + failures - 1))


def attempts_for(options: Mapping[str, Any]) -> int:
    value = options.get(RETRIES_OPTION, DEFAULT_ATTEMPTS)
    try:
        return max(int(value), 1)
    except (TypeError, ValueError):
        raise ValueError(f"{RETRIES_OPTION} must be an integer, got {value!r}") from None


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between threads and processes, held while the block runs."""
    with open(lock_path, "a+b") as fh:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:  # LK_LOCK gives up after 10 s: keep waiting
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _version(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "generation", "version_id", "VersionId"):
        if info.get(key):
            return str(info[key]).strip('"')
    for key in ("LastModified", "last_modified", "mtime", "updated", "Last-Modified"):
        if info.get(key):
            return str(info[key])
    return ""


def cached_path(source: Source, info: Mapping[str, Any]) -> Path:
    """Where the copy of ``source`` at the version ``info`` describes lives in the cache."""
    identity = json.dumps([source.uri, _version(info), info.get("size")])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return cache_dir(source.storage_options) / digest / (source.name or "file")


def local_copy(source: Source) -> Path:
    """The local path of ``source``: itself when local, else a cached copy, fetched once.

    Raises:
        FileNotFoundError: the remote object (or its bucket) does not exist.
        PermissionError: access refused.
        RemoteError: the endpoint failed past the retry limit, or the download came out short.
    """
    if source.is_local:
        return source.local_path()
    with _memo_lock:
        known = _memo.get(source.key)
    if known is not None and known.exists():
        return known
    attempts = attempts_for(source.storage_options)
    fs = source.filesystem()
    info = _info(fs, source, attempts)
    if info.get("type") == "directory":
        raise IsADirectoryError(21, "a folder, not a file", source.uri)
    target = cached_path(source, info)
    size = info.get("size")
    if not _complete(target, size):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.with_name(target.name + ".lock")):
            if not _complete(target, size):  # another worker may have fetched it meanwhile
                _download(fs, source, target, size, attempts)
    with _memo_lock:
        _memo[source.key] = target
    return target


def _info(fs: Any, source: Source, attempts: int) -> Mapping[str, Any]:
    """The remote file's metadata, with errors that name the full URL (fsspec's drop the
    protocol) and say what to check."""
    try:
        return retry(lambda: fs.info(source.uri), f"reading the size of {source.uri}", attempts)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            2, "No such remote file (check the bucket and the key)", source.uri
        ) from exc
    except PermissionError as exc:
        raise PermissionError(
            13, f"Access refused ({exc}); check the credentials in storage_options", source.uri
        ) from exc
    except RemoteError:
        raise
    except Exception as exc:
        if is_permanent(exc):  # missing credentials, a bad option
            raise RemoteError(
                f"{source.uri}: {type(exc).__name__}: {exc}. Set the credentials in "
                "storage_options (key/secret or profile for S3, token for GCS, account_name and "
                "account_key or sas_token for Azure) or in the environment"
            ) from exc
        raise


def _complete(path: Path, size: Any) -> bool:
    try:
        return size is None or path.stat().st_size == int(size)
    except FileNotFoundError:
        return False


def _download(fs: Any, source: Source, target: Path, size: Any, attempts: int) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    started = time.perf_counter()

    def fetch() -> None:
        _get_file(fs, source, partial, size)
        got = partial.stat().st_size
        if size is not None and got != int(size):
            raise ConnectionError(f"downloaded {got} of {size} bytes")

    try:
        retry(fetch, f"downloading {source.uri} to {target.parent}", attempts)
        os.chmod(partial, 0o444)
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    seconds = time.perf_counter() - started
    record = {"uri": source.uri, "bytes": size, "seconds": round(seconds, 3), "pid": os.getpid()}
    with open(target.parent / FETCH_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    log.info("fetched %s (%s bytes) into %s in %.1f s", source.uri, size, target, seconds)


def _get_file(fs: Any, source: Source, partial: Path, size: Any) -> None:
    """Download ``source`` to ``partial`` with a progress bar on stderr (a terminal only, and
    only for a download that lasts over half a second)."""
    from fsspec.callbacks import Callback

    total = None if size is None else int(size)
    with Bar(f"fetching {source.name}", total, unit="B", delay=PROGRESS_DELAY_S) as bar:

        def hook(size: int | None, value: int, **_: Any) -> None:
            if size:
                bar.set_total(int(size))
            bar.set(int(value))

        fs.get_file(source.uri, str(partial), callback=Callback(hooks={"tlcore": hook}))


def local_source(source: Source) -> Source:
    """``source`` for a reader that needs a local file: the cached copy, carrying only the
    reader options (fsspec options mean nothing to a local file)."""
    if source.is_local:
        return source
    return Source(str(local_copy(source)), "file", source.reader_options())


def clear_memo() -> None:
    """Forget which copies this process has checked (the files stay in the cache)."""
    global _memo_lock
    _memo_lock = threading.Lock()
    _memo.clear()


os.register_at_fork(after_in_child=clear_memo)
