"""Rows with several images: each other image checked like the main one (file, scene,
channels, level, time range), and its grid against the main image's (T, Z, Y, X sizes; pixel
sizes where both files record them), every problem naming the row, the image's column and the
fix. Called by :func:`tlcore.validation.rows.validate_rows`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tlcore.validation.report import Problem

if TYPE_CHECKING:
    from tlcore.sampling.manifest import ManifestRow

#: Relative difference of pixel sizes still taken as the same grid (rounding in metadata).
PIXEL_SIZE_TOLERANCE = 1e-3
_COLUMN_OF = {"path": "path", "channel": "channel", "scene": "scene", "resolution": "resolution"}


def _as_row(row: ManifestRow, key: str) -> ManifestRow:
    ref = row.images[key]
    return dataclasses.replace(
        row, path=ref.path, scene=ref.scene, resolution=ref.resolution, channels=ref.channels,
        options=ref.options, images={}, key=key,
    )  # fmt: skip


def _renamed(found: Problem, ref_columns: Mapping[str, str], key: str) -> Problem:
    column = found.column
    if column in _COLUMN_OF and _COLUMN_OF[column] in ref_columns:
        column = ref_columns[_COLUMN_OF[column]]
    elif column in ("path", "channel"):
        column = ref_columns.get("path", column)
    text = f"{key!r} image: {found.problem}"
    return dataclasses.replace(found, column=column, problem=text)


def _grid(row: ManifestRow, key: str, main: Any, other: Any, column: str) -> list[Problem]:
    out = []
    t0, _, *zyx0 = main.shape
    t1, _, *zyx1 = other.shape
    if (t0, *zyx0) != (t1, *zyx1):
        out.append(Problem(
            row.row, column, other.uri,
            f"the {key!r} image's grid (T, Z, Y, X) = {(t1, *zyx1)} differs from the "
            f"{row.key!r} image's {(t0, *zyx0)} ({row.path}): one crop box cannot apply to both",
            "pair files on the same grid (or the same resolution level of each), or resample "
            "one of them", None, row.origin, row.split,
        ))  # fmt: skip
    for axis, a, b in zip("zyx", main.pixel_sizes, other.pixel_sizes):
        if a is None or b is None or not a or not b:
            continue
        if abs(a - b) > PIXEL_SIZE_TOLERANCE * max(abs(a), abs(b)):
            out.append(Problem(
                row.row, column, other.uri,
                f"the {key!r} image's {axis} pixel size is {b:g} um, the {row.key!r} image's "
                f"{a:g} um: same sizes in pixels, different physical grids",
                "check that the files belong together (or the levels chosen)", None,
                row.origin, row.split,
            ))  # fmt: skip
    return out


def pair_problems(
    rows: Sequence[ManifestRow],
    storage_options: Mapping[str, Any] | None,
    opened_main: Mapping[int, Any],
    open_image: Callable[[str, Any, int, dict[str, Any]], Any],
    check_row: Callable[[ManifestRow, Any], list[Problem]],
) -> list[Problem]:
    """Problems of every other image of ``rows`` (``opened_main``: ``id(row)`` -> the main
    image's open result; ``open_image`` and ``check_row`` are the row checks' own)."""
    out: list[Problem] = []
    cache: dict[tuple[Any, ...], Any] = {}
    for row in rows:
        for key, ref in row.images.items():
            options = {**(storage_options or {}), **ref.options}
            ident = (ref.path, ref.scene, ref.resolution, json.dumps(options, sort_keys=True,
                                                                     default=repr))  # fmt: skip
            if ident not in cache:
                cache[ident] = open_image(ref.path, ref.scene, ref.resolution, options)
            opened = cache[ident]
            found = check_row(_as_row(row, key), opened)
            out.extend(_renamed(p, ref.columns, key) for p in found)
            main = opened_main.get(id(row))
            if opened.image is not None and main is not None and main.image is not None:
                out.extend(_grid(row, key, main.image, opened.image, ref.columns["path"]))
    return out
