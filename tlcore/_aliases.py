"""Names resolved on first use: the module paths of tlcore before its layers became
subpackages (kept importable), and package attributes that live in heavy modules.

``import tlcore.compute`` (or ``from tlcore.lazyarray import LazyArray``, a pickled object, a
Hydra ``_target_``) resolves to the module's new home, the very same module object, so
``isinstance`` checks and module state are shared. Nothing is imported until an old path is
asked for: the finder only maps names. New code and the docs use the new homes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

#: Old module path (below ``tlcore.``) -> its home now. Submodules follow their package
#: (``tlcore.bench.throughput`` -> ``tlcore.cli.bench.throughput``).
MOVED: dict[str, str] = {
    "api": "tlcore.readers.api",
    "bench": "tlcore.cli.bench",
    "cache": "tlcore.readers.cache",
    "chunkcache": "tlcore.lazy.chunkcache",
    "compute": "tlcore.lazy.compute",
    "datamodule": "tlcore.training.datamodule",
    "dataset": "tlcore.training",
    "demo": "tlcore.cli.demo",
    "foreground": "tlcore.transforms.foreground",
    "guards": "tlcore.transforms.guards",
    "hookspecs": "tlcore.readers.hookspecs",
    "lazyarray": "tlcore.lazy.array",
    "manifest": "tlcore.sampling.manifest",
    "preview": "tlcore.cli.preview",
    "regions": "tlcore.lazy.regions",
    "registry": "tlcore.readers.registry",
    "remote": "tlcore.io.remote",
    "source": "tlcore.io.source",
    "validate": "tlcore.validation",
    "zarrfast": "tlcore.decoders.zarrfast",
}


def new_home(name: str) -> str | None:
    """The module that the old path ``name`` (``tlcore.compute``) now is, or None."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0] != "tlcore" or parts[1] not in MOVED:
        return None
    return ".".join([MOVED[parts[1]], *parts[2:]])


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self.own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # The module object itself, not a copy: the import system stores it under the old name
        # too, and keeps its own __name__.
        module = importlib.import_module(self.target)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The target ran when it was imported; the import system has just set __spec__ to the
        # alias's, so the module gets its own back (reload and tooling read it).
        module.__spec__ = self.own_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        home = new_home(fullname)
        if home is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(home))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())


def lazy_names(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names whose modules import on first
    access (``homes``: name -> module path), so importing the package stays light. A resolved
    name is kept in the package's namespace: the next access is a plain attribute."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    return __getattr__, __dir__
