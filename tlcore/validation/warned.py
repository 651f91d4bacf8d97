"""Reader warnings raised while validation opens files, turned into report warnings: once per
file and message, counted in the summary, instead of lines on stderr with a library's source
line under each.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from tlcore.validation.report import Problem

if TYPE_CHECKING:
    from tlcore.sampling.manifest import ManifestRow


@contextlib.contextmanager
def reader_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning raised inside (the opening threads' too: the record hook is
    process-wide while it is active)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def warning_problems(
    caught: Sequence[warnings.WarningMessage], rows: Sequence[ManifestRow]
) -> list[Problem]:
    """One warning per (file, message) that names a manifest file; the others are issued
    again, unchanged, once each."""
    out: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    others: set[tuple[str, type[Warning]]] = set()
    by_path = {str(row.path): row for row in reversed(rows)}  # the first row of each file
    for record in caught:
        text = str(record.message)
        row = next((r for p, r in by_path.items() if p and p in text), None)
        if row is None:
            key = (text, record.category)
            if key not in others:
                others.add(key)
                warnings.warn_explicit(record.message, record.category, record.filename,
                                       record.lineno)  # fmt: skip
            continue
        if (row.path, text) in seen:
            continue
        seen.add((row.path, text))
        out.append(
            Problem(row.row, "path", row.path, f"{record.category.__name__}: {text}",
                    "none needed if the value read is right (the reader says what it assumed)",
                    None, row.origin, row.split, "warning")
        )  # fmt: skip
    return out
