"""The reader registry: finds format plugins through entry points and picks one per source.

Discovery happens once per registry (``tlcore.readers`` entry points), on first use. A plugin
that fails to import or to describe itself is reported with a :class:`PluginLoadWarning` and in
``tlcore plugins``; the others keep working. ``TLCORE_DISABLE_READERS=a,b`` skips plugins by
name; ``TLCORE_READER_ORDER=a,b`` (or :meth:`Registry.set_order`) ranks readers ahead of their
priority.

Choosing a reader for a source is deterministic:

1. ``reader="name"`` wins outright.
2. Otherwise the loaded readers whose extensions match the source's name are asked
   ``can_open``; if none claims the extension, every reader is asked and only an explicit
   ``True`` (a content sniff) counts.
3. Those that accept are ranked by user order, then priority (high first), then the longest
   matching extension, then name.

Once chosen, every call for that source goes to the same plugin.

A remote source (``s3://``, ``gs://``...) whose reader reads local files only
(``ReaderInfo.remote=False``: ND2, CZI, LIF) is fetched once into tlcore's local cache
(:mod:`tlcore.io.remote`) and the reader is handed the copy; the image keeps the remote URL.
Choosing does not fetch it when the extension settles the choice (one reader claims it, and a
refusal would leave no other): that reader's ``can_open`` is asked on the local copy when the
first hook call fetches it, and a refusal raises the same :class:`NoReaderError` (same reader,
same reason) that choosing would have raised.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from tlcore.errors import NoReaderError, PluginLoadWarning, ReaderError, TlcoreError
from tlcore.io.source import OPTION_PREFIXES, Source
from tlcore.readers import hookspecs
from tlcore.types import ReaderInfo

ENTRY_POINT_GROUP = "tlcore.readers"
DISABLE_ENV = "TLCORE_DISABLE_READERS"
ORDER_ENV = "TLCORE_READER_ORDER"

#: Extensions of tlcore's own plugins, for "pip install ..." hints when none is installed.
KNOWN_PLUGINS: dict[str, tuple[str, str]] = {
    ".ome.zarr": ("ome-zarr", "tlcore-ome-zarr"),
    ".zarr": ("ome-zarr", "tlcore-ome-zarr"),
    ".nd2": ("nd2", "tlcore-nd2"),
    ".czi": ("czi", "tlcore-czi"),
    ".lif": ("lif", "tlcore-lif"),
    ".ome.tif": ("ome-tiff", "tlcore-tiff"),
    ".ome.tiff": ("ome-tiff", "tlcore-tiff"),
    ".tif": ("tiff", "tlcore-tiff"),
    ".tiff": ("tiff", "tlcore-tiff"),
}


@dataclass(frozen=True)
class PluginRecord:
    """What the registry knows about one plugin, loaded or not.

    ``status`` is ``"loaded"``, ``"failed"`` (``error`` says why) or ``"disabled"``.
    """

    name: str
    status: str
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None
    info: ReaderInfo | None = None
    error: str | None = None

    @property
    def extensions(self) -> tuple[str, ...]:
        return self.info.extensions if self.info else ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "extensions": list(self.extensions),
            "priority": self.info.priority if self.info else None,
            "description": self.info.description if self.info else None,
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class Refusal:
    reader: str
    reason: str


def _env_names(var: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, "").split(",") if n.strip()]


class Registry:
    """A set of reader plugins and the rules for choosing among them.

    ``Registry()`` discovers installed entry points on first use; ``Registry(entry_points=False)``
    starts empty (for tests and embedding). :func:`get_registry` returns the shared default one.
    """

    def __init__(self, *, entry_points: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginRecord] = {}
        self._discover_pending = entry_points
        self._order: list[str] | None = None
        self._chosen: dict[tuple[Any, ...], str] = {}
        #: remote sources chosen by extension for a local-only reader whose can_open is still
        #: to be asked on the local copy (source key -> the extension matches, for messages)
        self._unverified: dict[tuple[Any, ...], list[tuple[PluginRecord, int]]] = {}
        self._lock = threading.RLock()

    # -- discovery ---------------------------------------------------------------------------
    def _ensure_discovered(self) -> None:
        if not self._discover_pending:
            return
        with self._lock:
            if not self._discover_pending:
                return
            self._discover_pending = False
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                self._load_entry_point(ep)

    def _load_entry_point(self, ep: EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        base: dict[str, Any] = {"distribution": dist, "version": version, "entry_point": ep.value}
        if ep.name in self._records:
            return  # the same plugin installed twice (e.g. editable + wheel): first one wins
        if ep.name in _env_names(DISABLE_ENV):
            self._records[ep.name] = PluginRecord(ep.name, "disabled", **base)
            return
        try:
            info = self._register(_plugin_object(ep.load()), ep.name)
        except Exception as exc:  # a broken plugin must not break the others
            message = f"{type(exc).__name__}: {exc}"
            self._records[ep.name] = PluginRecord(ep.name, "failed", error=message, **base)
            warnings.warn(
                f"tlcore reader plugin {ep.name!r} (from {dist or ep.value}) failed to load and "
                f"is skipped: {message}. Reinstall or upgrade it, or set "
                f"{DISABLE_ENV}={ep.name} to silence this.",
                PluginLoadWarning,
                stacklevel=3,
            )
            return
        self._records[ep.name] = PluginRecord(ep.name, "loaded", info=info, **base)

    def _register(self, plugin: Any, name: str) -> ReaderInfo:
        if self._pm.has_plugin(name):
            raise ValueError(f"a reader named {name!r} is already registered")
        self._pm.register(plugin, name=name)
        try:
            infos = self._caller("reader_info", name)()
            if len(infos) != 1 or not isinstance(infos[0], ReaderInfo):
                raise TypeError(f"reader_info() must return one tlcore.ReaderInfo, got {infos!r}")
            if self._caller("open_lazy", name).get_hookimpls() == []:
                raise TypeError("the plugin implements no open_lazy hook")
        except Exception:
            self._pm.unregister(name=name)
            raise
        # Its "name_*" storage options are its own, never passed to fsspec.
        OPTION_PREFIXES.add(infos[0].name.replace("-", "_"))
        return infos[0]

    def register(self, plugin: Any, name: str | None = None) -> ReaderInfo:
        """Register a plugin object (module, class instance) by hand, outside entry points.

        ``name`` defaults to the name the plugin's ``reader_info`` gives.
        """
        self._ensure_discovered()
        with self._lock:
            if name is None:
                info = plugin.reader_info() if hasattr(plugin, "reader_info") else None
                if not isinstance(info, ReaderInfo):
                    raise TypeError(f"{plugin!r} has no reader_info() returning ReaderInfo")
                name = info.name
            info = self._register(plugin, name)
            self._records[name] = PluginRecord(name, "loaded", info=info)
            self._forget_choices()
            return info

    def unregister(self, name: str) -> None:
        """Remove a plugin (it stays listed nowhere)."""
        self._ensure_discovered()
        with self._lock:
            if self._pm.has_plugin(name):
                self._pm.unregister(name=name)
            self._records.pop(name, None)
            self._forget_choices()

    def set_order(self, names: Sequence[str] | None) -> None:
        """Rank these readers first, in this order, whatever their priority.
        ``None`` goes back to ``TLCORE_READER_ORDER``."""
        with self._lock:
            self._order = list(names) if names is not None else None
            self._forget_choices()

    def _forget_choices(self) -> None:
        with self._lock:
            self._chosen.clear()
            self._unverified.clear()

    # -- queries -----------------------------------------------------------------------------
    def records(self) -> list[PluginRecord]:
        """Every plugin seen, loaded or not, sorted by name."""
        self._ensure_discovered()
        return sorted(self._records.values(), key=lambda r: r.name)

    def loaded(self) -> list[PluginRecord]:
        return [r for r in self.records() if r.status == "loaded"]

    def info(self, name: str) -> ReaderInfo:
        record = self._records.get(name)
        if record is None or record.info is None:
            raise self._unknown_reader(name)
        return record.info

    def _caller(self, hook: str, name: str) -> Any:
        others = [p for n, p in self._pm.list_name_plugin() if n != name]
        return self._pm.subset_hook_caller(hook, remove_plugins=others)

    def call(self, name: str, hook: str, source: Source, **kwargs: Any) -> Any:
        """Call one plugin's hook. Exceptions other than tlcore's own are wrapped in
        :class:`ReaderError` naming the source and the plugin."""
        self._ensure_discovered()
        if not self._pm.has_plugin(name):
            raise self._unknown_reader(name)
        seen = self._for_reader(name, source)
        if source.key in self._unverified:
            self._verify(name, source, seen)
        source = seen
        try:
            return self._caller(hook, name)(source=source, **kwargs)
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as exc:
            if isinstance(exc, TlcoreError):
                raise
            where = ", ".join(f"{k} {v}" for k, v in kwargs.items())
            raise ReaderError(
                f"reader {name!r} failed on {source.uri}{' (' + where + ')' if where else ''}"
                f" in {hook}: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _needs_copy(record: PluginRecord, source: Source) -> bool:
        """Whether reader ``record`` is handed a local copy of ``source`` (remote source,
        local-only reader)."""
        return not source.is_local and record.info is not None and not record.info.remote

    def _for_reader(self, name: str, source: Source) -> Source:
        """The source as reader ``name`` sees it: a local-only reader (``remote=False``) gets
        the cached local copy of a remote file (:mod:`tlcore.io.remote`), fetched on first use."""
        if source.is_local:
            return source
        record = self._records.get(name)
        if record is None or record.info is None or record.info.remote:
            return source
        from tlcore.io import remote

        return remote.local_source(source)

    def _verify(self, name: str, source: Source, seen: Source) -> None:
        """Ask ``can_open`` of the reader chosen by extension alone for the remote ``source``,
        now that its local copy ``seen`` exists; a refusal raises what choosing would have."""
        with self._lock:
            by_ext = self._unverified.get(source.key)
        if by_ext is None:
            return
        accepted, refusal = self._ask(name, seen, sniffing=False)
        if not accepted:
            refusals = [refusal] if refusal is not None else []
            raise NoReaderError(self._no_reader_message(source, by_ext, refusals))
        with self._lock:
            self._unverified.pop(source.key, None)

    def _ask(self, name: str, seen: Source, sniffing: bool) -> tuple[bool, Refusal | None]:
        """Reader ``name``'s ``can_open`` verdict on ``seen``: accepted, or the refusal."""
        try:
            verdict = self._caller("can_open", name)(source=seen)
        except Exception as exc:
            return False, Refusal(name, f"can_open raised {type(exc).__name__}: {exc}")
        if verdict is True or (verdict is None and not sniffing):
            return True, None
        if verdict is None or verdict is False:
            return False, None if sniffing else Refusal(name, "declined")
        return False, Refusal(name, str(verdict))

    # -- selection ---------------------------------------------------------------------------
    def _user_order(self) -> list[str]:
        return self._order if self._order is not None else _env_names(ORDER_ENV)

    def select(self, source: Source, reader: str | None = None) -> str:
        """Return the name of the reader that opens ``source`` (see the module docstring).

        Raises:
            FileNotFoundError: a local path that does not exist.
            NoReaderError: no installed reader accepts the source, or ``reader`` is unknown.
        """
        self._ensure_discovered()
        if source.is_local and not os.path.exists(source.uri):
            matches = source.glob_matches()
            if matches is None:
                raise FileNotFoundError(2, "No such file or directory", source.uri)
            if not matches:
                raise FileNotFoundError(2, "No file matches the pattern", source.uri)
        if reader is not None:
            if not self._pm.has_plugin(reader):
                raise self._unknown_reader(reader)
            return reader
        key = source.key
        with self._lock:
            if key in self._chosen:
                return self._chosen[key]
        name = self._choose(source)
        with self._lock:
            self._chosen[key] = name
        return name

    def _choose(self, source: Source) -> str:
        loaded = self.loaded()
        by_ext: list[tuple[PluginRecord, int]] = []
        for rec in loaded:
            assert rec.info is not None
            n = rec.info.match_length(source.name)
            if n is not None:
                by_ext.append((rec, n))
        sniffing = not any(n > 0 for _, n in by_ext)
        if not sniffing and source.glob_matches() is None:
            # A reader that claims the extension is the authority on it: when it refuses a
            # file (damaged, truncated), a catch-all ("*", the bioio bridge) is not asked to
            # read it anyway; reader="NAME" still forces one.
            by_ext = [(r, n) for r, n in by_ext if n > 0]
        # Sniffing content is not worth a download: local-only readers then see the remote
        # source as it is (and refuse it). Matched by extension, they see the local copy.
        candidates = by_ext if not sniffing else [(r, 0) for r in loaded]
        order = self._user_order()

        def rank(item: tuple[PluginRecord, int]) -> tuple[int, int, int, str]:
            rec, n = item
            assert rec.info is not None
            pos = order.index(rec.name) if rec.name in order else len(order)
            return (pos, -rec.info.priority, -n, rec.name)

        # Asked in rank order, stopping at the first yes: the same choice as asking all, and a
        # low-priority catch-all (the bioio bridge, whose can_open imports bioio) is asked only
        # when every reader above it said no.
        if not sniffing and len(candidates) == 1 and self._needs_copy(candidates[0][0], source):
            # One reader claims the extension and it reads local copies only: its refusal
            # would leave no other reader, so the choice is settled without fetching the file;
            # can_open is asked on the copy the first hook call fetches (_verify).
            with self._lock:
                self._unverified[source.key] = list(by_ext)
            return candidates[0][0].name
        accepted: list[tuple[PluginRecord, int]] = []
        refusals: list[Refusal] = []
        for rec, n in sorted(candidates, key=rank):
            if accepted:
                break
            # A failed download (missing object, no credentials, endpoint down) is the
            # answer, not one reader's refusal: it propagates.
            seen = source if sniffing else self._for_reader(rec.name, source)
            ok, refusal = self._ask(rec.name, seen, sniffing)
            if ok:
                accepted.append((rec, n))
            elif refusal is not None:
                refusals.append(refusal)
        if not accepted:
            raise NoReaderError(self._no_reader_message(source, by_ext, refusals))
        return accepted[0][0].name

    # -- messages ----------------------------------------------------------------------------
    def _installed_summary(self) -> list[str]:
        lines = []
        for rec in self.records():
            exts = ", ".join(rec.extensions) or "-"
            state = rec.status if rec.status != "failed" else f"failed: {rec.error}"
            lines.append(f"  {rec.name} ({exts}) [{state}]")
        return lines or ["  (none)"]

    def _hints(self, filename: str) -> list[str]:
        installed = {r.name for r in self.records() if r.status == "loaded"}
        hints = []
        lower = filename.lower()
        for ext, (reader, dist) in sorted(KNOWN_PLUGINS.items(), key=lambda kv: -len(kv[0])):
            if lower.endswith(ext) and reader not in installed:
                hint = f"  pip install {dist}   # reads {ext}"
                if hint not in hints:
                    hints.append(hint)
        if not any(lower.endswith(ext) for ext in KNOWN_PLUGINS):
            from tlcore.readers.bioio_formats import install_hints

            hints.extend(install_hints(filename, bridge_installed="bioio" in installed))
        return hints

    def _no_reader_message(
        self,
        source: Source,
        by_ext: Iterable[tuple[PluginRecord, int]],
        refusals: Sequence[Refusal],
    ) -> str:
        matched = [rec.name for rec, n in by_ext if n > 0]
        lines = [f"no installed tlcore reader can open {source.uri}"]
        lines.append("installed readers:")
        lines.extend(self._installed_summary())
        if matched:
            lines.append(f"readers matching the extension: {', '.join(matched)}")
        else:
            lines.append(f"no installed reader claims the extension of {source.name!r}")
        if refusals:
            lines.append("why each reader refused:")
            lines.extend(f"  {r.reader}: {r.reason}" for r in refusals)
        hints = self._hints(source.name)
        if hints:
            lines.append("a reader for this extension exists but is not installed:")
            lines.extend(hints)
        elif not matched:
            lines.append("check the path, or pass reader='NAME' to force one")
        return "\n".join(lines)

    def _unknown_reader(self, name: str) -> NoReaderError:
        record = self._records.get(name)
        if record is not None and record.status != "loaded":
            why = f"is {record.status}" + (f" ({record.error})" if record.error else "")
            return NoReaderError(
                f"reader {name!r} {why}\ninstalled readers:\n"
                + "\n".join(self._installed_summary())
            )
        hint = [f"  pip install {d}" for r, d in set(KNOWN_PLUGINS.values()) if r == name]
        return NoReaderError(
            "\n".join(
                [f"no reader named {name!r} is installed", "installed readers:"]
                + self._installed_summary()
                + (["to install it:", *hint] if hint else [])
            )
        )


_default: Registry | None = None
_default_lock = threading.Lock()


def _plugin_object(loaded: Any) -> Any:
    """What an entry point names, as pluggy registers it: a hook module declared with
    :class:`~tlcore.readers.hooks.ReaderHooks` (``my_package.reader``, whose ``hooks`` is that
    object) is the object; anything else (a module of ``@hookimpl`` functions, a hook object
    named with ``module:attribute``) is itself."""
    from types import ModuleType

    from tlcore.readers.hooks import ReaderHooks

    hooks = getattr(loaded, "hooks", None) if isinstance(loaded, ModuleType) else None
    return hooks if isinstance(hooks, ReaderHooks) else loaded


def get_registry() -> Registry:
    """The process-wide registry used by :func:`tlcore.open_lazy` and friends."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default


def reset_registry() -> None:
    """Forget the default registry, so the next call rediscovers entry points (after a
    ``pip install`` in a running process, or in tests)."""
    global _default
    with _default_lock:
        _default = None
