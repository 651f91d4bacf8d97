"""Where an image lives: a local path or a URL that fsspec understands, plus storage options.

Kept free of heavy imports: fsspec and universal-pathlib are imported only when a remote source
is actually touched.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fsspec

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})


def _split_protocol(uri: str) -> tuple[str, str]:
    if "://" in uri:
        protocol, rest = uri.split("://", 1)
        # "C://..." is a Windows drive, not a protocol.
        if len(protocol) > 1:
            return protocol.lower(), rest
    return "", uri


@dataclass(frozen=True, eq=False)
class Source:
    """An image location handed to every reader hook.

    Attributes:
        uri: an absolute local path (``/data/a.nd2``) or a URL (``s3://bucket/a.ome.zarr``),
            without a trailing slash.
        protocol: ``"file"`` for local paths, else the URL scheme (``"s3"``, ``"gs"``...).
        storage_options: keyword arguments for the fsspec filesystem (credentials, endpoint).
    """

    uri: str
    protocol: str = "file"
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_any(cls, location: Any, storage_options: Mapping[str, Any] | None = None) -> Source:
        """Build a Source from a str, a ``pathlib.Path``, a ``upath.UPath`` or a Source."""
        if isinstance(location, Source):
            if storage_options:
                return cls(location.uri, location.protocol, dict(storage_options))
            return location
        options = dict(storage_options or {})
        # A UPath carries its own protocol and storage options.
        upath_protocol = getattr(location, "protocol", None)
        if isinstance(upath_protocol, str) and hasattr(location, "storage_options"):
            if upath_protocol not in LOCAL_PROTOCOLS:
                merged = {**dict(location.storage_options), **options}
                return cls(str(location).rstrip("/"), upath_protocol, merged)
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
        return cls(f"{protocol}://{rest.rstrip('/')}", protocol, options)

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

    def filesystem(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem for this source (imports fsspec on first use)."""
        import fsspec

        return fsspec.filesystem(self.protocol, **dict(self.storage_options))

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

        return UPath(self.uri, **dict(self.storage_options))
