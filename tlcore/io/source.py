"""Where an image lives: a local path or a URL that fsspec understands, plus storage options.

Kept free of heavy imports: fsspec and universal-pathlib are imported only when a remote source
is actually touched.
"""

from __future__ import annotations

import copy
import os
import posixpath
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fsspec

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})

#: Characters that make a local path a glob pattern (:meth:`Source.glob_matches`).
GLOB_CHARS = "*?["

#: Prefixes of storage-option keys that configure a reader or tlcore itself, not fsspec:
#: ``czi_tiles``, ``lif_mosaic``, ``tiff_dims``, ``tlcore_cache_dir``... The registry adds the
#: name of every reader it loads (``-`` read as ``_``), so a new plugin's ``name_*`` options are
#: kept away from fsspec too.
OPTION_PREFIXES: set[str] = {"tlcore", "czi", "lif", "tiff", "nd2", "ome_zarr", "ome_tiff"}

#: Timeouts and retries for S3 unless the user sets them: no remote read waits forever.
S3_CONFIG_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 60,
    "retries": {"max_attempts": 5, "mode": "standard"},
}

#: Storage-option keys whose values are never shown (errors, logs, repr).
_SECRET_WORDS = ("secret", "token", "password", "key", "credential", "sas", "connection_string")


def is_reader_option(key: str) -> bool:
    """Whether ``key`` is a reader's (or tlcore's) option rather than an fsspec one."""
    prefix, sep, _ = str(key).partition("_")
    if not sep:
        return False
    if prefix in OPTION_PREFIXES:
        return True
    # two-word reader names: "ome_zarr_level" -> "ome_zarr"
    return "_".join(str(key).split("_")[:2]) in OPTION_PREFIXES


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every credential-like value replaced by ``"***"``, for messages."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if isinstance(v, Mapping):
            out[k] = redact(v)
        elif any(w in str(k).lower() for w in _SECRET_WORDS) and v not in (None, False, ""):
            out[k] = "***"
        else:
            out[k] = v
    return out


def is_remote_path(path: str) -> bool:
    """Whether ``path`` names something read over the network: a URL whose protocol is not
    ``file://``."""
    return "://" in path and not path.startswith("file://")


_s3_session: Any = None
_s3_session_lock = threading.Lock()


def shared_s3_session() -> Any:
    """The aiobotocore session every S3 filesystem of this process is made from (unless the
    storage options name a ``session`` or a ``profile``).

    A session loads botocore's service model and endpoint rules (about 0.2-0.4 s of CPU
    here) and resolves credentials once; a client made from a warm one costs a tenth of that.
    A forked DataLoader worker inherits the parent's warm session (it holds no connection:
    clients do, and every process makes its own), so its first crop does not pay it again.
    """
    global _s3_session
    if _s3_session is None:
        with _s3_session_lock:
            if _s3_session is None:
                from aiobotocore.session import AioSession  # type: ignore[import-untyped]

                _s3_session = AioSession()
    return _s3_session


def _renew_session_lock() -> None:
    global _s3_session_lock
    _s3_session_lock = threading.Lock()  # one a parent's thread held at fork stays held


os.register_at_fork(after_in_child=_renew_session_lock)


def _with_defaults(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """Add tlcore's timeouts to S3 options that do not set their own."""
    if protocol not in ("s3", "s3a"):
        return options
    config = dict(options.get("config_kwargs") or {})
    for k, v in S3_CONFIG_DEFAULTS.items():
        config.setdefault(k, copy.deepcopy(v))
    return {**options, "config_kwargs": config}


def _split_protocol(uri: str) -> tuple[str, str]:
    if "://" in uri:
        protocol, rest = uri.split("://", 1)
        # "C://..." is a Windows drive, not a protocol.
        if len(protocol) > 1:
            return protocol.lower(), rest
    return "", uri


def normalise_url(uri: str) -> str:
    """``uri`` with ``.`` and ``..`` resolved in its path, as ``os.path.normpath`` does for a
    local path: ``s3://b/manifests/../movie.ome.zarr`` -> ``s3://b/movie.ome.zarr``.

    The first component (the bucket, container or host) is kept; URLs with a query string are
    returned unchanged (a signed URL's path must stay as signed).

    Raises:
        ValueError: a ``..`` would climb above the bucket.
    """
    protocol, rest = _split_protocol(uri)
    if protocol in LOCAL_PROTOCOLS or "?" in rest or "#" in rest:
        return uri
    head, _, path = rest.partition("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ValueError(f"{uri}: '..' climbs above the bucket {head!r}")
            parts.pop()
        else:
            parts.append(part)
    return f"{protocol}://" + "/".join([head, *parts])


@dataclass(frozen=True, eq=False)
class Source:
    """An image location handed to every reader hook.

    Attributes:
        uri: an absolute local path (``/data/a.nd2``) or a URL (``s3://bucket/a.ome.zarr``),
            without a trailing slash.
        protocol: ``"file"`` for local paths, else the URL scheme (``"s3"``, ``"gs"``...).
        storage_options: keyword arguments for the fsspec filesystem (credentials, endpoint),
            plus reader options (keys prefixed with a reader's name: ``czi_tiles``,
            ``tiff_dims``; see :func:`is_reader_option`). :meth:`fsspec_options` and
            :meth:`reader_options` separate the two. S3 sources get tlcore's default
            timeouts (:data:`S3_CONFIG_DEFAULTS`) in ``config_kwargs`` where the user set none.
    """

    uri: str
    protocol: str = "file"
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_any(cls, location: Any, storage_options: Mapping[str, Any] | None = None) -> Source:
        """Build a Source from a str, a ``pathlib.Path``, a ``upath.UPath`` or a Source."""
        if isinstance(location, Source):
            if storage_options:
                options = _with_defaults(location.protocol, dict(storage_options))
                return cls(location.uri, location.protocol, options)
            return location
        options = dict(storage_options or {})
        # A UPath carries its own protocol and storage options.
        upath_protocol = getattr(location, "protocol", None)
        if isinstance(upath_protocol, str) and hasattr(location, "storage_options"):
            if upath_protocol not in LOCAL_PROTOCOLS:
                merged = {**dict(location.storage_options), **options}
                uri = normalise_url(str(location).rstrip("/"))
                return cls(uri, upath_protocol, _with_defaults(upath_protocol, merged))
            location = location.path
        if isinstance(location, os.PathLike):
            location = os.fspath(location)
        if not isinstance(location, str):
            raise TypeError(
                f"expected a path or URL (str, os.PathLike or upath.UPath), got {location!r}"
            )
        if not location:
            raise ValueError("empty path")
        protocol, rest = _split_protocol(location)
        if protocol in LOCAL_PROTOCOLS:
            path = os.path.abspath(os.path.expanduser(rest))
            return cls(path, "file", options)
        uri = normalise_url(f"{protocol}://{rest.rstrip('/')}")
        return cls(uri, protocol, _with_defaults(protocol, options))

    # -- naming ------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def name(self) -> str:
        """The last path component (``"a.ome.zarr"``), used for extension matching."""
        return posixpath.basename(self.uri.replace("\\", "/").rstrip("/"))

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A hashable identity: the uri plus the storage options."""
        return (self.uri, tuple(sorted((k, repr(v)) for k, v in self.storage_options.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Source) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        # Credentials never reach a traceback or a log through a repr.
        options = redact(self.storage_options)
        return f"Source({self.uri!r}, protocol={self.protocol!r}, storage_options={options!r})"

    # -- options -----------------------------------------------------------------------------
    def fsspec_options(self) -> dict[str, Any]:
        """The storage options meant for fsspec: every key but the readers' and tlcore's.

        A deep copy: botocore rewrites the ``retries`` dict it is given in place
        (``max_attempts`` becomes ``total_max_attempts``), which would change this source's
        :attr:`key` after its first request and miss every cache keyed by it."""
        options = {
            k: copy.deepcopy(v) for k, v in self.storage_options.items() if not is_reader_option(k)
        }
        if self.protocol in ("s3", "s3a") and not {"session", "profile"} & options.keys():
            options["session"] = shared_s3_session()
        return options

    def reader_options(self) -> dict[str, Any]:
        """The readers' and tlcore's own options (``czi_tiles``, ``tlcore_cache_dir``...)."""
        return {k: v for k, v in self.storage_options.items() if is_reader_option(k)}

    # -- access ------------------------------------------------------------------------------
    def local_path(self) -> Path:
        """The local path; raises ValueError for a remote source."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local path")
        return Path(self.uri)

    def exists(self) -> bool:
        if self.is_local:
            return os.path.exists(self.uri)
        return bool(self.filesystem().exists(self.uri))

    def glob_matches(self) -> list[str] | None:
        """The files a local glob pattern (``/data/exp1/*.tif``, ``**`` recursive) matches,
        sorted; None when this source is not one (remote, no ``*?[``, or an existing path whose
        name merely holds such a character). An empty list is a pattern that matches nothing.
        A reader that reads file series (the bioio bridge) opens the pattern as one image."""
        if not self.is_local or not any(c in self.uri for c in GLOB_CHARS):
            return None
        if os.path.exists(self.uri):
            return None
        import glob

        return sorted(p for p in glob.glob(self.uri, recursive=True) if os.path.isfile(p))

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem for this source (imports fsspec on first use)."""
        import fsspec

        return fsspec.filesystem(self.protocol, **self.fsspec_options())

    def child(self, *parts: str) -> Source:
        """A source for a path inside this one (a file inside a zarr store, say)."""
        sep = os.sep if self.is_local else "/"
        uri = sep.join([self.uri, *(p.strip("/") for p in parts)])
        return Source(uri, self.protocol, self.storage_options)

    def read_bytes(self, start: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes from ``start`` (the whole file when None): for header sniffing."""
        if self.is_local:
            with open(self.uri, "rb") as fh:
                fh.seek(start)
                return fh.read() if length is None else fh.read(length)
        fs = self.filesystem()
        end = None if length is None else start + length
        return bytes(fs.cat_file(self.uri, start=start, end=end))

    def upath(self) -> Any:
        """This source as a ``upath.UPath`` (imports universal-pathlib on first use)."""
        from upath import UPath

        options = self.fsspec_options()
        if options.get("session") is _s3_session:  # a UPath pickles its options: not this
            del options["session"]
        return UPath(self.uri, **options)
