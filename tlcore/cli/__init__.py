"""The ``tlcore`` command (:mod:`~tlcore.cli.app`) with its demo, preview and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tlcore`` command (the console script's entry point)."""
    from tlcore.cli.app import main as run

    return run(argv)
