"""The package layout's rules: small modules, a short top level, no import cycle, and every
module path of before the layers still importable. (The layers themselves are import-linter's
contracts in pyproject.toml, run by `make lint`.)"""

from __future__ import annotations

import importlib
import pickle
import sys
from pathlib import Path

import grimp
import pytest

import tlcore
from tlcore import _aliases

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
MAX_TOP_LEVEL_MODULES = 14


def _sources() -> list[Path]:
    found = list((ROOT / "tlcore").rglob("*.py"))
    found += [p for p in (ROOT / "plugins").glob("*/src/**/*.py")]
    return sorted(found)


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules by job (at most {MAX_LINES} lines): {long}"


def test_the_top_level_stays_short() -> None:
    modules = sorted(p.name for p in (ROOT / "tlcore").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_no_import_cycle_between_modules() -> None:
    """Strongly connected components of tlcore's module graph (function-level imports
    included, annotation-only imports not): every one must be a single module."""
    graph = grimp.build_graph("tlcore", exclude_type_checking_imports=True)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("old", sorted(_aliases.MOVED))
def test_old_module_paths_are_the_new_modules(old: str) -> None:
    """``import tlcore.<old>`` gives the very module object of its new home, which keeps its
    own name and spec."""
    alias = importlib.import_module(f"tlcore.{old}")
    home = importlib.import_module(_aliases.MOVED[old])
    assert alias is home
    assert alias.__name__ == _aliases.MOVED[old]
    assert alias.__spec__ is not None and alias.__spec__.name == _aliases.MOVED[old]


def test_names_the_docs_used_resolve_through_old_paths() -> None:
    from tlcore.chunkcache import stats
    from tlcore.compute import compute
    from tlcore.dataset import TimelapseDataset, collate_samples, worker_init
    from tlcore.lazy import ArrayReader, as_dask
    from tlcore.lazyarray import LazyArray
    from tlcore.zarrfast import open_array, unsupported_reason

    assert compute.__module__ == "tlcore.lazy.compute"
    assert ArrayReader.__module__ == "tlcore.lazy.reader" and callable(as_dask)
    assert stats is importlib.import_module("tlcore.lazy.chunkcache").stats
    assert LazyArray.__module__ == "tlcore.lazy.array"
    assert TimelapseDataset.__module__ == "tlcore.training.dataset"
    assert collate_samples.__module__ == "tlcore.training.collate"
    assert worker_init.__module__ == "tlcore.training.workers"
    assert callable(open_array) and callable(unsupported_reason)


def test_a_class_pickles_under_its_new_home() -> None:
    from tlcore.readers.registry import PluginRecord

    record = PluginRecord("x", "loaded")
    assert pickle.loads(pickle.dumps(record)) == record
    assert b"tlcore.readers.registry" in pickle.dumps(record)


def test_every_public_name_imports_from_tlcore() -> None:
    for name in tlcore.__all__:
        assert getattr(tlcore, name) is not None, name


def test_an_unknown_old_path_is_still_an_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("tlcore.no_such_module")
