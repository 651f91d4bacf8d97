"""Check a manifest before training: every row, every problem at once, and what training will
cost when it passes.

Each row is checked through the same public open path training uses
(:func:`tlcore.cache.open_cached`, hence :func:`tlcore.open_lazy` and the reader registry, local
or remote), so whatever would fail in a DataLoader worker hours into a run fails here first: a
missing or unreadable file, a file no installed reader opens, a scene, level or channel the file
does not have, a time range outside the file, a crop larger than the image. Files open in a
bounded thread pool (one task per distinct file, scene and level; rows that share them share the
result), and one chunk per scene is read so that files whose metadata opens but whose pixels do
not (LIF lambda scans, FLIM OME-TIFF) are caught too. Nothing is ever written.

Only the standard library is imported here; the manifest reader (pandas) and the readers load
when a check runs.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlcore.errors import (
    LevelNotFoundError,
    NoReaderError,
    SceneNotFoundError,
    TlcoreError,
)

if TYPE_CHECKING:
    from tlcore.images import LazyImage
    from tlcore.manifest import Columns, ManifestRow

__all__ = [
    "Problem",
    "Report",
    "SplitCost",
    "ValidationError",
    "validate_manifest",
    "validate_rows",
]

#: Resident memory of an idle DataLoader worker that has imported torch, MONAI, dask and the
#: readers (measured: 321 MiB peak RSS on Linux, CPU torch 2.13; see docs/troubleshooting.md).
WORKER_BASE_BYTES = 336 * 2**20
#: DataLoader's default batches in flight per worker.
PREFETCH_FACTOR = 2


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
                    f"{_size(c.sample_bytes):>10} {_size(c.output_bytes):>10} "
                    f"{_size(c.decoded_bytes):>10} {c.amplification:>5.1f}x "
                    f"{_size(c.worker_bytes):>11}"
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


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# -- opening ---------------------------------------------------------------------------------


@dataclass
class _Opened:
    """What opening one (file, scene, level) gave: the image, or the problem."""

    image: LazyImage | None = None
    scene_ids: list[str] | None = None
    column: str = "path"
    problem: str = ""
    fix: str = ""


def _describe_failure(exc: BaseException, path: str) -> tuple[str, str, str]:
    """(column, problem, fix) for an exception from the open path."""
    name = type(exc).__name__
    if isinstance(exc, SceneNotFoundError):
        return "scene", str(exc), "use one of the scene indices or ids listed"
    if isinstance(exc, LevelNotFoundError):
        return "resolution", str(exc), "use an existing level (0 is full resolution)"
    if isinstance(exc, PermissionError):
        return (
            "path",
            f"permission denied reading it ({exc.strerror or exc})",
            "make the file (and its folders) readable by this user, e.g. chmod a+r",
        )
    local = "://" not in path or path.startswith("file://")
    if local and os.path.isdir(path) and not isinstance(exc, FileNotFoundError):
        return (
            "path",
            f"is a folder, and no reader opens it as an image ({name}: {exc})",
            "name the image file inside it; only OME-Zarr stores are folders",
        )
    if isinstance(exc, FileNotFoundError) or (local and not os.path.exists(path)):
        pattern = local and any(c in path for c in "*?[")
        return (
            "path",
            "no file matches the pattern" if pattern else "the file does not exist",
            "correct the path (relative paths resolve against the manifest's folder)",
        )
    if isinstance(exc, NoReaderError):
        return "path", str(exc), "install the reader named above, or convert the file"
    return (
        "path",
        f"cannot be opened: {name}: {exc}",
        "the file is damaged or a variant its reader does not support: re-export it or drop "
        "the row",
    )


def _open(path: str, scene: Any, level: int, options: Mapping[str, Any] | None) -> _Opened:
    import tlcore
    from tlcore.cache import open_cached

    try:
        scene_ids = tlcore.list_scenes(path, storage_options=options or None)
        image = open_cached(path, scene, level, options or None)
    except Exception as exc:  # every failure becomes a reported problem, not a crash
        column, problem, fix = _describe_failure(exc, path)
        return _Opened(column=column, problem=problem, fix=fix)
    try:
        # One chunk of the first timepoint: files whose metadata opens but whose pixels do not.
        image.data[0, 0, 0, 0, 0].compute(scheduler="synchronous")
    except Exception as exc:
        return _Opened(
            image=None,
            column="path",
            problem=(
                f"opens, but scene {image.scene!r} level {level} cannot be read "
                f"({type(exc).__name__}: {exc})"
            ),
            fix="this file's pixels are unreadable with the installed reader: re-export it "
            "(e.g. to OME-Zarr) or drop the row",
        )
    return _Opened(image=image, scene_ids=scene_ids)


# -- the checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What the cost estimate needs of a valid row."""

    path: str
    timepoints: int
    sample_bytes: float
    output_bytes: float
    decoded_bytes: float


def _expected_chunks(size: int, window: int, chunk: int) -> float:
    """Mean number of chunks a window of ``window`` at a uniformly random start touches."""
    window, chunk = max(1, min(window, size)), max(1, chunk)
    starts = size - window + 1
    if starts > 200_000:  # the grid is periodic: the mean over one chunk period is exact
        starts_range: Sequence[int] = range(chunk)
    else:
        starts_range = range(starts)
    total = sum((s + window - 1) // chunk - s // chunk + 1 for s in starts_range)
    return total / len(starts_range)


def _facts(
    row: ManifestRow,
    image: LazyImage,
    channels: list[int],
    n_range: int,
    num_timepoints: int,
    patch: tuple[int, int, int],
) -> _Facts:
    t, c, z, y, x = image.shape
    ct, cc, cz, cy, cx = (int(n) for n in image.data.chunksize)
    itemsize = int(image.dtype.itemsize)
    crop = [min(p, n) for p, n in zip(patch, (z, y, x))]
    sample = num_timepoints * len(channels) * math.prod(crop) * itemsize
    c_chunks = len({ch // cc for ch in channels})
    decoded = (
        min(num_timepoints * ct, t)
        * min(c_chunks * cc, c)
        * math.prod(
            min(_expected_chunks(n, p, k) * k, n) for n, p, k in zip((z, y, x), crop, (cz, cy, cx))
        )
        * itemsize
    )
    return _Facts(row.path, n_range, sample, sample / itemsize * 4, max(decoded, sample))


def _channels(row: ManifestRow, image: LazyImage) -> tuple[list[int], str]:
    """The row's channel indices, or an error message."""
    n = image.shape[1]
    names = list(image.channel_names)
    if row.channels is None:
        return list(range(n)), ""
    out = []
    for ch in row.channels:
        if isinstance(ch, int):
            if not -n <= ch < n:
                return [], f"channel {ch} is out of range: the file has {n} channel(s) {names}"
            out.append(ch % n)
        elif ch in names:
            out.append(names.index(ch))
        else:
            return [], f"no channel named {ch!r}: the file's channels are {names}"
    return out, ""


def _check_row(
    row: ManifestRow,
    opened: _Opened,
    num_timepoints: int,
    patch_shape: tuple[int, ...] | None,
    spatial_dims: int,
) -> tuple[list[Problem], _Facts | None]:
    from tlcore.sampling import resolve_range

    def problem(column: str | None, text: str, fix: str, value: Any = None) -> Problem:
        return Problem(row.row, column, row.path, text, fix, value, row.origin, row.split)

    if opened.image is None:
        value = {"scene": row.scene, "resolution": row.resolution}.get(opened.column)
        return [problem(opened.column, opened.problem, opened.fix, value)], None
    image = opened.image
    out: list[Problem] = []
    t, c, z, y, x = image.shape
    ids = opened.scene_ids or []
    as_id = str(row.scene)
    if isinstance(row.scene, int) and as_id in ids and ids.index(as_id) != row.scene:
        out.append(
            Problem(
                row.row, "scene", row.path,
                f"{row.scene} is read as a scene index ({ids[row.scene]!r}), but the file also "
                f"has a scene id {str(row.scene)!r} (index {ids.index(str(row.scene))})",
                "write the index of the scene you mean", row.scene, row.origin, row.split,
                "warning",
            )
        )  # fmt: skip
    channels, message = _channels(row, image)
    if message:
        names = list(image.channel_names)
        fix = f"use indices 0-{c - 1} or names {names}, or leave it empty for every channel"
        out.append(problem("channel", message, fix, ",".join(map(str, row.channels or ()))))
    n_range = 0
    try:
        n_range = len(resolve_range(row.start, row.stop, t))
    except ValueError as exc:
        column = "stop" if str(exc).startswith("stop") else "start"
        value = row.stop if column == "stop" else row.start
        fix = f"use 0 <= start < stop <= {t} (stop is exclusive; empty or -1 = to the end)"
        out.append(problem(column, str(exc), fix, value))
    if n_range and n_range < num_timepoints:
        out.append(
            problem(
                "stop",
                f"the range holds {n_range} timepoint(s), fewer than num_timepoints="
                f"{num_timepoints}",
                "widen start/stop, or lower num_timepoints",
                row.stop,
            )
        )
    if spatial_dims == 2 and z != 1:
        out.append(
            problem("path", f"has Z={z}, but spatial_dims=2 needs Z == 1", "use spatial_dims=3")
        )
    patch: tuple[int, int, int] = (z, y, x)
    if patch_shape is not None:
        full = (1, *patch_shape) if len(patch_shape) == 2 else tuple(patch_shape)
        if any(p > n for p, n in zip(full, (z, y, x))):
            out.append(
                problem(
                    "patch_shape",
                    f"the crop {tuple(patch_shape)} is larger than the image (Z, Y, X) = "
                    f"{(z, y, x)}",
                    "use a smaller patch_shape, or drop the row",
                )
            )
        patch = (int(full[0]), int(full[1]), int(full[2]))
    if out and any(p.severity == "error" for p in out):
        return out, None
    return out, _facts(row, image, channels, n_range, num_timepoints, patch)


def _duplicates(rows: Sequence[ManifestRow]) -> list[Problem]:
    seen: dict[tuple[Any, ...], ManifestRow] = {}
    out = []
    for row in rows:
        key = (
            row.split, row.path, row.scene, row.resolution, row.channels, row.start, row.stop,
            json.dumps(dict(row.options), sort_keys=True, default=repr),
        )  # fmt: skip
        first = seen.setdefault(key, row)
        if first is not row:
            out.append(
                Problem(
                    row.row, None, row.path,
                    f"duplicates {first.origin} row {first.row}: it is drawn twice as often",
                    "delete the row, or keep it if the weighting is meant", None, row.origin,
                    row.split, "warning",
                )
            )  # fmt: skip
    return out


def _patterns(paths: Iterable[str]) -> dict[str, int]:
    """The glob patterns among local ``paths`` and how many files each matches."""
    from tlcore.source import Source

    found: dict[str, int] = {}
    for path in dict.fromkeys(paths):
        matches = Source.from_any(path).glob_matches()
        if matches is not None:
            found[path] = len(matches)
    return found


def validate_rows(
    rows: Mapping[str, Sequence[ManifestRow]],
    *,
    storage_options: Mapping[str, Any] | None = None,
    num_timepoints: int = 1,
    patch_shape: Sequence[int] | None = None,
    spatial_dims: int = 3,
    batch_size: int = 1,
    prefetch_factor: int = PREFETCH_FACTOR,
    max_workers: int = 8,
    progress: bool | Callable[[int, int], None] = False,
) -> Report:
    """Check coerced manifest rows (``{split: rows}``) against their files.

    Every distinct (file, scene, level, options) is opened once, ``max_workers`` at a time;
    ``progress`` is True for a bar on stderr (drawn only when stderr is a terminal, see
    :mod:`tlcore.progress`), or a callable ``(done, total)``. Returns a
    :class:`Report` with every problem found and, when there are none, the cost per split.
    """
    report = Report()
    patch = None if patch_shape is None else tuple(int(n) for n in patch_shape)
    all_rows = [row for split_rows in rows.values() for row in split_rows]
    report.rows = len(all_rows)
    keys: dict[tuple[Any, ...], tuple[str, Any, int, dict[str, Any]]] = {}
    row_keys = []
    for row in all_rows:
        options = {**(storage_options or {}), **row.options}
        key = (
            row.path,
            row.scene,
            row.resolution,
            json.dumps(options, sort_keys=True, default=repr),
        )
        keys.setdefault(key, (row.path, row.scene, row.resolution, options))
        row_keys.append(key)
    report.files = len({k[0] for k in keys})
    report.patterns = _patterns(k[0] for k in keys)
    from tlcore.progress import Bar

    bar = Bar("checking", len(keys)) if progress is True else None
    report_progress: Callable[[int, int], None] | None = None
    if bar is not None:
        report_progress = bar
    elif callable(progress):
        report_progress = progress
    done = 0
    lock = threading.Lock()

    def task(args: tuple[str, Any, int, dict[str, Any]]) -> _Opened:
        nonlocal done
        opened = _open(*args)
        if report_progress is not None:
            with lock:
                done += 1
                report_progress(done, len(keys))
        return opened

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(keys) or 1))) as pool:
            results = dict(zip(keys, pool.map(task, keys.values())))
    finally:
        if bar is not None:
            bar.close()
    facts: dict[str, list[_Facts]] = {}
    for row, key in zip(all_rows, row_keys):
        found, fact = _check_row(row, results[key], num_timepoints, patch, spatial_dims)
        report.problems.extend(found)
        if fact is not None:
            facts.setdefault(row.split, []).append(fact)
    report.problems.extend(_duplicates(all_rows))
    if report.ok:
        for split, split_facts in facts.items():
            report.costs[split] = _cost(split, split_facts, batch_size, prefetch_factor)
    return report


def _cost(split: str, facts: list[_Facts], batch_size: int, prefetch: int) -> SplitCost:
    n = len(facts)
    sample = sum(f.sample_bytes for f in facts) / n
    decoded = sum(f.decoded_bytes for f in facts) / n
    worst = max(facts, key=lambda f: f.decoded_bytes + f.output_bytes)
    in_flight = max(1, prefetch) * max(1, batch_size)
    return SplitCost(
        split=split,
        rows=n,
        files=len({f.path for f in facts}),
        timepoints=sum(f.timepoints for f in facts),
        sample_bytes=sample,
        output_bytes=sum(f.output_bytes for f in facts) / n,
        decoded_bytes=decoded,
        decoded_bytes_max=worst.decoded_bytes,
        amplification=decoded / sample if sample else 1.0,
        worker_bytes=WORKER_BASE_BYTES + in_flight * (worst.decoded_bytes + worst.output_bytes),
    )


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
    """Read a manifest (anything :func:`tlcore.manifest.read_manifest` takes), collect every
    cell that does not coerce, then check the rows of ``splits`` (all by default) against their
    files with :func:`validate_rows` (``kwargs`` go there). ``required`` splits must have rows.

    A manifest that cannot be read at all (missing, empty, not UTF-8) is one problem."""
    from tlcore.manifest import ManifestError, collect_rows

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
