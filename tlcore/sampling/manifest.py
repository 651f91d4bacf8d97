"""Manifests: the table of files to train on, one row per (file, scene, level, channels, time
range), read from a CSV, one CSV per split, inline metadata or a pandas DataFrame.

Cells are read as text and coerced here, column by column, whatever pandas would have guessed:
``"0,1"`` and ``"0"`` in one channel column, an empty ``stop`` or an integer scene all work.
Every error names the manifest, the row and the column. Reading a manifest opens no image.
pandas is imported only when a manifest is read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlcore import vocabulary
from tlcore.errors import TlcoreError
from tlcore.io.source import is_remote_path
from tlcore.sampling.images import ImageRef, parse_images

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("train", "val", "test")


class ManifestError(TlcoreError, ValueError):
    """A manifest that cannot be used: names the manifest, the row and the column."""


@dataclass(frozen=True)
class CellProblem:
    """A cell that does not coerce (collected by :func:`collect_rows` instead of raised).

    ``row`` is None for a problem of the whole table (a missing column, an empty file)."""

    origin: str
    row: int | None
    column: str | None
    value: Any
    problem: str


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row, coerced.

    Attributes:
        split: the split it belongs to.
        row: its 0-based position in its source table (the CSV's data rows).
        origin: where it came from (the CSV's path, ``"dict_meta"`` or ``"DataFrame"``).
        path: the image path or URL; relative paths are resolved against the manifest's folder.
        scene: a scene index (int) or id (str).
        resolution: the resolution level (0 = full resolution).
        channels: channel indices or names, or None for every channel.
        start: the first timepoint, or None for 0.
        stop: the timepoint after the last one (exclusive), or None for "to the end".
        extras: the ``extra_columns`` of the row, numbers as int/float, the rest as str.
        options: reader options for this file (merged over the run's ``storage_options``), such
            as ``{"czi_tiles": True}``, ``{"lif_mosaic": "tiles"}`` or a TIFF dimension order.
        key: the sample key of the main image (``"raw"``).
        images: the row's other images by key (pairs: :mod:`tlcore.sampling.images`).
    """

    split: str
    row: int
    origin: str
    path: str
    scene: int | str = 0
    resolution: int = 0
    channels: tuple[int | str, ...] | None = None
    start: int | None = None
    stop: int | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str = vocabulary.IMAGE
    images: Mapping[str, ImageRef] = field(default_factory=dict)

    def where(self) -> str:
        """``"train.csv row 3 (data/a.nd2)"``: for error messages."""
        return f"{self.origin} row {self.row} ({self.path})"


@dataclass(frozen=True)
class Columns:
    """The manifest's column names."""

    img_path_column: str = vocabulary.PATH_COLUMN
    channel_column: str = vocabulary.CHANNEL_COLUMN
    split_column: str | None = vocabulary.SPLIT_COLUMN
    scene_column: str = vocabulary.SCENE_COLUMN
    resolution_column: str = vocabulary.RESOLUTION_COLUMN
    time_start_column: str = vocabulary.TIME_START_COLUMN
    time_stop_column: str = vocabulary.TIME_STOP_COLUMN
    options_column: str = vocabulary.OPTIONS_COLUMN
    extra_columns: tuple[str, ...] = ()
    #: the main image's key; the others' columns: ``{"target": {"path": "target_path"}}``
    image_key: str = vocabulary.IMAGE
    images: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", "nan", "None", "NaN")


def _as_int(value: Any) -> int:
    """An integer from ``3``, ``3.0``, ``"3"``, ``" 3 "`` or ``"3.0"``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"{value!r} is not an integer")
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if number.is_integer():
            return int(number)
        raise ValueError(f"{value!r} is not an integer") from None


def parse_channels(value: Any) -> tuple[int | str, ...] | None:
    """Channel cell -> indices and/or names: ``2``, ``"0,2,4"``, ``"GFP,DAPI"``, ``[0, 2]``;
    empty or ``"all"`` -> None (every channel)."""
    if _is_empty(value):
        return None
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return None
        parts: list[Any] = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    out: list[int | str] = []
    for part in parts:
        if _is_empty(part):
            raise ValueError(f"empty channel in {value!r}")
        try:
            out.append(_as_int(part))
        except ValueError:
            out.append(str(part).strip())
    return tuple(out)


def parse_scene(value: Any) -> int | str:
    """Scene cell -> an index (digits) or an id; empty -> 0."""
    if _is_empty(value):
        return 0
    try:
        return _as_int(value)
    except ValueError:
        return str(value).strip()


def parse_options(value: Any) -> dict[str, Any]:
    """Options cell -> a dict: a JSON object (``{"czi_tiles": true}``) or ``key=value`` pairs
    separated by ``;`` (``lif_mosaic=tiles; tiff_dims=TYX``), values read as JSON where they
    parse (``true``, ``3``) and as text otherwise; empty -> {}."""
    import json

    if _is_empty(value):
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    text = str(value).strip()
    if text.startswith("{"):
        parsed = json.loads(text)
        if not isinstance(parsed, dict):
            raise ValueError(f"options {text!r} is not a JSON object")
        return parsed
    out: dict[str, Any] = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"options {text!r}: write key=value pairs separated by ';'")
        try:
            out[key.strip()] = json.loads(raw.strip())
        except ValueError:
            out[key.strip()] = raw.strip()
    return out


def _optional_int(value: Any) -> int | None:
    return None if _is_empty(value) else _as_int(value)


def _number_or_text(values: Sequence[Any]) -> list[Any]:
    """An extra column: numbers when every non-empty cell is one, else text (empty -> "")."""
    numbers: list[Any] = []
    for v in values:
        if _is_empty(v):
            numbers.append(math.nan)
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            numbers.append(v)
            continue
        try:
            numbers.append(_as_int(v))
        except ValueError:
            try:
                numbers.append(float(str(v).strip()))
            except ValueError:
                return ["" if _is_empty(x) else str(x) for x in values]
    return numbers


def _resolution(value: Any) -> int:
    level = _optional_int(value) or 0
    if level < 0:
        raise ValueError(f"resolution {level} is negative")
    return level


_PARSERS = {"path": lambda v: None if _is_empty(v) else str(v), "channel": parse_channels,
            "scene": parse_scene, "resolution": _resolution, "options": parse_options}  # fmt: skip


def _resolve(path: str, base: str | None) -> str:
    """Resolve ``path`` against the folder of the manifest at ``base`` (local or a URL)."""
    if base is None or "://" in path or os.path.isabs(path) or path.startswith("~"):
        return os.path.expanduser(path)
    if is_remote_path(base):
        from tlcore.io.source import normalise_url

        parent = base.rstrip("/").rsplit("/", 1)[0]
        return normalise_url(f"{parent}/{path}")  # "..", "." resolved as for local paths
    base_path = base[len("file://") :] if base.startswith("file://") else base
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base_path)), path))


def _read_table(location: Any, storage_options: Mapping[str, Any] | None) -> pd.DataFrame:
    import pandas as pd

    text = str(location)
    kwargs: dict[str, Any] = {"dtype": str, "keep_default_na": False, "skipinitialspace": True}
    options: dict[str, Any] = {}
    if is_remote_path(text) and storage_options:
        from tlcore.io.source import is_reader_option

        # Reader options (czi_tiles, tlcore_cache_dir...) mean nothing to fsspec.
        options = {k: v for k, v in storage_options.items() if not is_reader_option(k)}
    if hasattr(location, "storage_options") and hasattr(location, "open"):  # a UPath
        import fsspec

        # The UPath's own options win over the run's.
        merged = {**options, **dict(location.storage_options)}
        try:
            with fsspec.open(text, "rb", **merged) as fh:
                return _parse(pd, fh, text, kwargs)
        except FileNotFoundError as exc:
            raise ManifestError(f"manifest {text} does not exist") from exc
    if options:
        kwargs["storage_options"] = options
    if not is_remote_path(text) and not os.path.exists(text):
        raise ManifestError(f"manifest {text} does not exist")
    return _parse(pd, text, text, kwargs)


def _parse(pd: Any, handle: Any, name: str, kwargs: dict[str, Any]) -> Any:
    lower = name.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            kwargs.pop("dtype"), kwargs.pop("keep_default_na"), kwargs.pop("skipinitialspace")
            return pd.read_parquet(handle, **kwargs)
        if lower.endswith((".tsv", ".tab")):
            kwargs["sep"] = "\t"
        return pd.read_csv(handle, **kwargs)
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest {name} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"manifest {name} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as "
            "UTF-8 (in Excel: 'CSV UTF-8'; or iconv -f latin1 -t utf-8)"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise ManifestError(
            f"manifest {name} is empty: write a header line (path,split,...) and one row per file"
        ) from exc
    except Exception as exc:  # pandas' parser errors have many types
        raise ManifestError(f"manifest {name} cannot be read: {type(exc).__name__}: {exc}") from exc


def _rows_from_frame(
    frame: pd.DataFrame,
    columns: Columns,
    origin: str,
    base: str | None,
    split: str | None,
    problems: list[CellProblem] | None = None,
) -> list[ManifestRow]:
    """The frame's rows, coerced. With ``problems``, every bad cell and missing column is
    appended there (and its row left out) instead of raising on the first."""
    frame = frame.rename(columns=lambda c: str(c).strip())
    present = set(frame.columns)

    def table_problem(column: str, message: str) -> None:
        if problems is None:
            raise ManifestError(f"{origin}: {message}")
        problems.append(CellProblem(origin, None, column, None, message))

    if columns.img_path_column not in present:
        table_problem(
            columns.img_path_column,
            f"no path column {columns.img_path_column!r}; columns are "
            f"{sorted(present)} (set img_path_column=...)",
        )
        return []
    if split is None and columns.split_column is not None and columns.split_column not in present:
        table_problem(
            columns.split_column,
            f"no split column {columns.split_column!r}; columns are {sorted(present)} "
            "(set split_column=..., give one manifest per split, or split_column=None to "
            "train on every row)",
        )
        return []
    missing = [c for c in columns.extra_columns if c not in present]
    lost = [c for spec in columns.images.values() for c in spec.values() if c not in present]
    if missing or lost:  # the argument to fix, named as the user spelled it
        what = f"extra_columns {missing}" if missing else f"image columns {lost}"
        table_problem(
            (missing + lost)[0], f"{what} are not in the manifest; columns are {sorted(present)}"
        )
        return []
    extras = {c: _number_or_text(list(frame[c])) for c in columns.extra_columns}
    # Plain lists: indexing a DataFrame cell by cell costs ~100 us, 8 s for 10,000 rows.
    table = {str(c): frame[c].tolist() for c in frame.columns}

    def cell(name: str, i: int) -> Any:
        return table[name][i] if name in table else None

    rows = []
    for i in range(len(frame)):
        column = columns.img_path_column
        try:
            raw_path = cell(column, i)
            if _is_empty(raw_path):
                raise ValueError("the path is empty")
            row_split = split
            if row_split is None:
                if columns.split_column is None:
                    row_split = "train"
                else:
                    column = columns.split_column
                    value = cell(column, i)
                    row_split = "" if _is_empty(value) else str(value).strip().lower()
                    if row_split not in SPLITS:
                        raise ValueError(f"split {value!r} is not one of {list(SPLITS)}")
            column = columns.scene_column
            scene = parse_scene(cell(column, i))
            column = columns.resolution_column
            resolution = _resolution(cell(column, i))
            column = columns.channel_column
            channels = parse_channels(cell(column, i))
            column = columns.time_start_column
            start = _optional_int(cell(column, i))
            column = columns.time_stop_column
            stop = _optional_int(cell(column, i))
            if start is not None and stop is not None and stop != -1 and 0 <= stop <= start:
                raise ValueError(f"start {start} is not before stop {stop} (stop is exclusive)")
            column = columns.options_column
            options = parse_options(cell(column, i))
            images = parse_images(
                columns.images, lambda name: cell(name, i),  # noqa: B023 (called in this iteration)
                {"scene": scene, "resolution": resolution, "options": options},
                lambda p: _resolve(p, base), _PARSERS,
            )  # fmt: skip
        except ValueError as exc:
            column = getattr(exc, "column", column)
            if problems is not None:
                problems.append(CellProblem(origin, i, column, cell(column, i), str(exc)))
                continue
            raise ManifestError(
                f"{origin} row {i}, column {column!r}: {exc}. Fix the cell or leave it empty "
                "for the default"
            ) from None
        rows.append(
            ManifestRow(
                split=row_split,
                row=i,
                origin=origin,
                path=_resolve(str(raw_path).strip(), base),
                scene=scene,
                resolution=resolution,
                channels=channels,
                start=start,
                stop=stop,
                extras={c: extras[c][i] for c in columns.extra_columns},
                options=options,
                key=columns.image_key,
                images=images,
            )
        )
    return rows


def read_manifest(
    path: Any,
    columns: Columns | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, list[ManifestRow]]:
    """Read a manifest into rows per split (``"train"``, ``"val"``, ``"test"``; absent splits
    are empty lists).

    ``path`` is one of:

    * a CSV (or TSV, Parquet) path or URL, or a ``upath.UPath``: rows go to the split named in
      ``split_column`` (with ``split_column=None``, every row is ``train``);
    * a mapping ``{"train": csv, "val": csv, "test": csv}``: one manifest per split (any subset);
    * ``{"dict_meta": {column: [values, ...]}}``: the table inline (as in YAML configs);
    * a pandas ``DataFrame``.

    Relative image paths resolve against the folder of the CSV they appear in (the working
    directory for inline tables and DataFrames).
    """
    columns = columns or Columns()
    out: dict[str, list[ManifestRow]] = {s: [] for s in SPLITS}
    for rows in _load(path, columns, storage_options):
        for row in rows:
            out[row.split].append(row)
    return out


def collect_rows(
    path: Any,
    columns: Columns | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[ManifestRow]], list[CellProblem], dict[str, str]]:
    """Like :func:`read_manifest`, but every bad cell and missing column is collected instead
    of raised on the first (rows with a bad cell are left out). Also returns the tables read,
    ``{origin: split or ""}`` (for one-manifest-per-split, the split each table was given for).
    A table that cannot be read at all (missing, empty, not UTF-8) still raises ManifestError.
    """
    columns = columns or Columns()
    out: dict[str, list[ManifestRow]] = {s: [] for s in SPLITS}
    problems: list[CellProblem] = []
    tables: dict[str, str] = {}
    for rows in _load(path, columns, storage_options, problems, tables):
        for row in rows:
            out[row.split].append(row)
    return out, problems, tables


def _load(
    path: Any,
    columns: Columns,
    storage_options: Mapping[str, Any] | None,
    problems: list[CellProblem] | None = None,
    tables: dict[str, str] | None = None,
) -> Iterable[list[ManifestRow]]:
    import pandas as pd

    seen = tables if tables is not None else {}
    if isinstance(path, pd.DataFrame):
        seen["DataFrame"] = ""
        yield _rows_from_frame(path.astype(object), columns, "DataFrame", None, None, problems)
        return
    if isinstance(path, Mapping):
        if "dict_meta" in path:
            try:
                frame = pd.DataFrame({str(k): list(v) for k, v in dict(path["dict_meta"]).items()})
            except ValueError as exc:
                raise ManifestError(f"dict_meta: the columns differ in length ({exc})") from None
            seen["dict_meta"] = ""
            yield _rows_from_frame(frame.astype(object), columns, "dict_meta", None, None, problems)
            return
        unknown = [k for k in path if str(k) not in SPLITS]
        if unknown:
            raise ManifestError(
                f"manifest mapping has keys {unknown}: use train/val/test (one manifest per "
                "split) or dict_meta (an inline table)"
            )
        for split, location in path.items():
            if location is None:
                continue
            frame = _read_table(location, storage_options)
            seen[str(location)] = str(split)
            yield _rows_from_frame(
                frame, columns, str(location), str(location), str(split), problems
            )
        return
    frame = _read_table(path, storage_options)
    seen[str(path)] = ""
    yield _rows_from_frame(frame, columns, str(path), str(path), None, problems)
