"""Every manifest row checked against its file, through the open path training uses; files open
in a bounded thread pool, one task per distinct file, scene, level and options.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tlcore.errors import (
    LevelNotFoundError,
    NoReaderError,
    SceneNotFoundError,
)
from tlcore.io.source import is_remote_path

if TYPE_CHECKING:
    from tlcore.images import LazyImage
    from tlcore.sampling.manifest import ManifestRow
from tlcore.validation.cost import PREFETCH_FACTOR, Facts, row_facts, split_cost
from tlcore.validation.pipeline import SplitPipeline, check_pipelines
from tlcore.validation.report import Problem, Report
from tlcore.validation.warned import reader_warnings, warning_problems


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
    local = not is_remote_path(path)
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
    from tlcore.readers.cache import open_cached

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
) -> tuple[list[Problem], Facts | None]:
    from tlcore.sampling.draws import resolve_range

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
    return out, row_facts(row, image, channels, n_range, num_timepoints, patch)


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
    from tlcore.io.source import Source

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
    pipelines: Mapping[str, SplitPipeline] | None = None,
) -> Report:
    """Check coerced manifest rows (``{split: rows}``) against their files.

    Every distinct (file, scene, level, options) is opened once, ``max_workers`` at a time;
    ``progress`` is True for a bar on stderr (drawn only when stderr is a terminal, see
    :mod:`tlcore.progress`), or a callable ``(done, total)``. Returns a
    :class:`Report` with every problem found and, when there are none, the cost per split.

    ``pipelines`` (``{split: SplitPipeline}``) are dry-run on the rows that pass, once per file
    layout (:func:`tlcore.validation.pipeline.check_pipelines`): what would stop the first
    epoch's batches is reported too. Reader warnings raised while opening are reported once
    per file, as warnings.
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
        threads = max(1, min(max_workers, len(keys) or 1))
        with reader_warnings() as caught, ThreadPoolExecutor(max_workers=threads) as pool:
            results = dict(zip(keys, pool.map(task, keys.values())))
    finally:
        if bar is not None:
            bar.close()
    facts: dict[str, list[Facts]] = {}
    passed: dict[str, list[tuple[ManifestRow, LazyImage, int]]] = {}
    for row, key in zip(all_rows, row_keys):
        found, fact = _check_row(row, results[key], num_timepoints, patch, spatial_dims)
        report.problems.extend(found)
        if fact is not None:
            facts.setdefault(row.split, []).append(fact)
            image = results[key].image
            if image is not None:
                passed.setdefault(row.split, []).append((row, image, len(_channels(row, image)[0])))
    report.problems.extend(warning_problems(caught, all_rows))
    report.problems.extend(_duplicates(all_rows))
    if pipelines:
        report.problems.extend(
            check_pipelines(passed, pipelines, num_timepoints=num_timepoints,
                            spatial_dims=spatial_dims, batch_size=batch_size)
        )  # fmt: skip
    # -- rows with several images (#22): the other images and their grids --------------------
    if any(row.images for row in all_rows):
        from tlcore.validation.pairs import pair_problems

        report.problems.extend(pair_problems(
            all_rows, storage_options, {id(r): results[k] for r, k in zip(all_rows, row_keys)},
            _open, lambda r, o: _check_row(r, o, num_timepoints, patch, spatial_dims)[0],
        ))  # fmt: skip
    if report.ok:
        for split, split_facts in facts.items():
            report.costs[split] = split_cost(split, split_facts, batch_size, prefetch_factor)
    return report
