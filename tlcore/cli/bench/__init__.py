"""``tlcore bench ...``: benchmarks a user can run on their own machine. Each module here that
defines ``register(subparsers, common)`` adds one subcommand; heavy imports stay inside the
commands, so ``tlcore --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shutil
from pathlib import Path

__all__ = ["mark_complete", "register", "reuse_or_clear", "zyx"]


def zyx(text: str) -> tuple[int, int, int]:
    """A ``Z,Y,X`` (or ``ZxYxX``) command-line value: ``"32,128,128"`` -> (32, 128, 128)."""
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected Z,Y,X, got {text!r}")
    return (parts[0], parts[1], parts[2])


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``tlcore bench`` and one subcommand per benchmark module."""
    bench = sub.add_parser(
        "bench", help="measure speed and memory on this machine", parents=[common]
    )
    inner = bench.add_subparsers(dest="benchmark", required=True)
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        found = importlib.import_module(f"{__name__}.{module}")
        add = getattr(found, "register", None)
        if add is not None:
            add(inner, common)


def reuse_or_clear(path: Path) -> bool:
    """True when an earlier run finished writing the benchmark data at ``path`` (it is reused);
    otherwise removes what a cut-short run left there and creates the parent folder, for the
    caller to write it anew and then call :func:`mark_complete`."""
    if (path / ".complete").exists():
        return True
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return False


def mark_complete(path: Path) -> None:
    """Record that ``path`` was written whole (:func:`reuse_or_clear` reuses it from now on)."""
    (path / ".complete").touch()
