"""Check a manifest before training: every row, every problem at once, and what training will
cost when it passes.

Each row is checked through the same public open path training uses
(:func:`tlcore.readers.cache.open_cached`, hence :func:`tlcore.open_lazy` and the reader registry,
local or remote), so whatever would fail in a DataLoader worker hours into a run fails here first: a
missing or unreadable file, a file no installed reader opens, a scene, level or channel the file
does not have, a time range outside the file, a crop larger than the image. Files open in a bounded
thread pool (one task per distinct file, scene and level; rows that share them share the result),
and one chunk per scene is read so that files whose metadata opens but whose pixels do not (LIF
lambda scans, FLIM OME-TIFF) are caught too. Nothing is ever written.

Only the standard library is imported here; the manifest reader (pandas) and the readers load
when a check runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlcore.sampling.manifest import Columns, ManifestRow

from tlcore.validation.cost import PREFETCH_FACTOR, WORKER_BASE_BYTES
from tlcore.validation.report import Problem, Report, SplitCost, ValidationError
from tlcore.validation.rows import validate_rows

__all__ = [
    "PREFETCH_FACTOR",
    "WORKER_BASE_BYTES",
    "Problem",
    "Report",
    "SplitCost",
    "ValidationError",
    "validate_manifest",
    "validate_rows",
]


def _split_problems(
    rows: Mapping[str, Sequence[ManifestRow]],
    tables: Mapping[str, str],
    had_bad_rows: set[str],
    required: Sequence[str],
) -> list[Problem]:
    out = []
    given = {split: origin for origin, split in tables.items() if split}
    if not any(rows.values()) and not had_bad_rows:
        origin = ", ".join(tables) or "manifest"
        return [
            Problem(None, None, None, "the manifest has no rows", "add one row per file to "
                    "train on", None, origin)
        ]  # fmt: skip
    for split, split_rows in rows.items():
        if split_rows:
            continue
        if split in given:
            out.append(
                Problem(None, None, None, f"the {split!r} manifest has no usable rows",
                        "add rows, or leave the split out", None, given[split], split)
            )  # fmt: skip
        elif split in required:
            out.append(
                Problem(None, "split", None, f"no {split!r} rows: there is nothing to {split} on",
                        f"mark some rows split={split}", None, ", ".join(tables), split)
            )  # fmt: skip
        elif not given:
            out.append(
                Problem(None, "split", None, f"no {split!r} rows: that stage will be skipped",
                        f"mark some rows split={split} if you want it", None, ", ".join(tables),
                        split, "warning")
            )  # fmt: skip
    return out


def validate_manifest(
    path: Any,
    columns: Columns | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    splits: Sequence[str] | None = None,
    required: Sequence[str] = ("train",),
    **kwargs: Any,
) -> Report:
    """Read a manifest (anything :func:`tlcore.sampling.manifest.read_manifest` takes), collect
    every cell that does not coerce, then check the rows of ``splits`` (all by default) against
    their files with :func:`validate_rows` (``kwargs`` go there). ``required`` splits must
    have rows.

    A manifest that cannot be read at all (missing, empty, not UTF-8) is one problem."""
    from tlcore.sampling.manifest import ManifestError, collect_rows

    try:
        rows, cell_problems, tables = collect_rows(path, columns, storage_options)
    except ManifestError as exc:
        return Report(problems=[Problem(None, None, str(path), str(exc), origin=str(path))])
    wanted = set(splits) if splits is not None else set(rows)
    rows = {s: r for s, r in rows.items() if s in wanted}
    problems = [
        Problem(p.row, p.column, None, p.problem, "fix the cell, or leave it empty for the "
                "default", p.value, p.origin)
        for p in cell_problems
    ]  # fmt: skip
    bad_origins = {p.origin for p in cell_problems}
    report = validate_rows(rows, storage_options=storage_options, **kwargs)
    report.problems[:0] = problems + _split_problems(
        rows, tables, bad_origins, [s for s in required if s in wanted]
    )
    report.rows += len({(p.origin, p.row) for p in cell_problems if p.row is not None})
    if not report.ok:
        report.costs = {}
    return report
