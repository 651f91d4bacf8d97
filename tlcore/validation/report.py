"""What validation found: each problem (row, column, file, the fix), the cost per split, and
the report that prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlcore.errors import (
    TlcoreError,
)

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class Problem:
    """One problem: where (manifest, row, column, value, file), what, and how to fix it.

    ``row`` is the 0-based data row of ``origin`` (None for the whole manifest or a split);
    ``severity`` is ``"error"`` (training would fail) or ``"warning"`` (it would run, but
    probably not as meant)."""

    row: int | None
    column: str | None
    path: str | None
    problem: str
    fix: str = ""
    value: Any = None
    origin: str = ""
    split: str = ""
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif value is not None and not isinstance(value, (int, float, str, bool)):
            value = str(value)
        return {
            "row": self.row,
            "column": self.column,
            "path": self.path,
            "problem": self.problem,
            "fix": self.fix,
            "value": value,
            "origin": self.origin,
            "split": self.split,
            "severity": self.severity,
        }

    def __str__(self) -> str:
        where = self.origin or "manifest"
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f", column {self.column!r}"
            if self.value is not None and self.value != "":
                where += f" = {self.value!r}"
        if self.path:
            where += f" ({self.path})"
        text = f"{self.severity}: {where}: {self.problem.rstrip('. ')}"
        return f"{text}. Fix: {self.fix}" if self.fix else text


@dataclass(frozen=True)
class SplitCost:
    """What one split will cost, per sample (means over its rows; ``*_max`` the largest row).

    ``sample_bytes`` is the crop in the file's dtype (``output_bytes`` after ComputeDaskd's
    float32); ``decoded_bytes`` is what reading it decodes on average, whole storage chunks
    (dask chunks) included: ``amplification = decoded_bytes / sample_bytes``. ``worker_bytes``
    estimates one DataLoader worker's peak resident memory: an idle worker plus
    ``prefetch_factor * batch_size`` samples of the largest row, decoded and converted."""

    split: str
    rows: int
    files: int
    timepoints: int
    sample_bytes: float
    output_bytes: float
    decoded_bytes: float
    decoded_bytes_max: float
    amplification: float
    worker_bytes: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    """The outcome of a check: the problems (errors and warnings) and, for the splits that
    have rows, what a sample costs."""

    problems: list[Problem] = field(default_factory=list)
    costs: dict[str, SplitCost] = field(default_factory=dict)
    rows: int = 0
    files: int = 0
    #: glob-pattern paths (one image read from several files) -> how many files each matched.
    patterns: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "files": self.files,
            "patterns": dict(self.patterns),
            "problems": [p.as_dict() for p in self.problems],
            "costs": {s: c.as_dict() for s, c in self.costs.items()},
        }

    def format(self) -> str:
        """The report as text: every problem, then the cost table (when it passed)."""
        lines = [f"pattern {p} matched {n} file(s)" for p, n in self.patterns.items()]
        lines += [str(p) for p in self.problems]
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "FAILED" if n_err else "OK"
        lines.append(
            f"{verdict}: {self.rows} row(s), {self.files} file(s) checked; {n_err} error(s), "
            f"{n_warn} warning(s)"
        )
        if self.ok and self.costs:
            lines.append(
                f"{'split':<6} {'rows':>6} {'files':>6} {'timepoints':>10} {'sample':>10} "
                f"{'float32':>10} {'decoded':>10} {'ampl.':>6} {'worker mem':>11}"
            )
            for c in self.costs.values():
                lines.append(
                    f"{c.split:<6} {c.rows:>6} {c.files:>6} {c.timepoints:>10} "
                    f"{human_size(c.sample_bytes):>10} {human_size(c.output_bytes):>10} "
                    f"{human_size(c.decoded_bytes):>10} {c.amplification:>5.1f}x "
                    f"{human_size(c.worker_bytes):>11}"
                )
            lines.append(
                "(per sample; decoded = whole storage chunks the crop touches, on average; "
                "worker mem = one DataLoader worker's estimated peak)"
            )
        return "\n".join(lines)


class ValidationError(TlcoreError, ValueError):
    """A manifest failed validation; ``report`` holds every problem."""

    def __init__(self, report: Report) -> None:
        self.report = report
        errors = report.errors
        shown = "\n  ".join(str(p) for p in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(
            f"the manifest has {len(errors)} problem(s); nothing was trained:\n  {shown}{more}\n"
            "(run `tlcore validate MANIFEST` for the full report; validate=False skips the check)"
        )

    def __str__(self) -> str:
        return str(self.args[0])


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- opening ---------------------------------------------------------------------------------
