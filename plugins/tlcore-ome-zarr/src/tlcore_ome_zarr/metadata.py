"""OME-NGFF ``multiscales`` metadata (0.1 to 0.5), parsed and checked against the spec.

Pure functions on the JSON attributes of a zarr group: no I/O, so every rule is testable alone.
A rule the store breaks raises :class:`MetadataError` naming the field; where the intent is
unambiguous the value is read and a note (a warning, emitted by the caller) says what was assumed.

What the spec requires and this module checks (0.4 and 0.5; earlier versions had no axes or no
transformations, see :func:`parse_multiscales`):

* ``axes``: 2 to 5 objects with unique string ``name``; each one placeable on T, C, Z, Y, X by
  name or ``type``.
* ``datasets``: a non-empty list; each with a ``path`` string and ``coordinateTransformations``
  holding exactly one ``scale`` first, then at most one ``translation``, each with one number
  per axis. The same rules for the optional multiscale-level ``coordinateTransformations``,
  which apply after the dataset's (so the effective scale is the product of the two).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tlcore import DIMS, PixelSizes
from tlcore_ome_zarr.errors import MetadataError
from tlcore_ome_zarr.units import length_um, time_s

KNOWN_VERSIONS = ("0.1", "0.2", "0.3", "0.4", "0.5")
_TYPE_OF_DIM = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


@dataclass(frozen=True)
class Axis:
    name: str
    type: str | None
    unit: str | None  # as written; a non-string unit is kept as its repr (and converts to None)
    dim: str  # the T, C, Z, Y or X it is read as


@dataclass(frozen=True)
class Dataset:
    """One resolution level as the metadata describes it.

    ``scale`` and ``translation`` are the effective ones (dataset transform, then the
    multiscale-level one), one value per axis; ``scale`` is None before NGFF 0.4 (no
    transformations existed), ``translation`` is None when no transform gives one.
    """

    path: str
    scale: tuple[float, ...] | None
    translation: tuple[float, ...] | None


@dataclass(frozen=True)
class Multiscale:
    """One entry of a group's ``multiscales`` list: an image with its resolution levels."""

    version: str
    index: int
    field: str  # JSON path of the entry, for error messages ("ome.multiscales[0]")
    name: str | None
    axes: tuple[Axis, ...]
    datasets: tuple[Dataset, ...]
    channel_labels: tuple[str, ...] | None
    notes: tuple[str, ...] = ()

    def dims(self) -> str:
        """Native axis order as TCZYX letters (``"TYX"``)."""
        return "".join(a.dim for a in self.axes)

    def axis(self, dim: str) -> tuple[int, Axis] | None:
        for i, a in enumerate(self.axes):
            if a.dim == dim:
                return i, a
        return None

    def scale(self, level: int, dim: str) -> float | None:
        found = self.axis(dim)
        scale = self.datasets[level].scale
        return scale[found[0]] if found and scale is not None else None

    def translation(self, level: int, dim: str) -> float | None:
        found = self.axis(dim)
        translation = self.datasets[level].translation
        return translation[found[0]] if found and translation is not None else None

    def reordered(self, order: Sequence[int], note: str) -> Multiscale:
        return replace(
            self, datasets=tuple(self.datasets[i] for i in order), notes=(*self.notes, note)
        )


def ome_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """NGFF 0.5 nests everything under ``"ome"``; earlier versions keep it at the top."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, Mapping) else attrs


def field_prefix(attrs: Mapping[str, Any]) -> str:
    return "ome." if isinstance(attrs.get("ome"), Mapping) else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _version(raw: Any, field: str) -> str:
    text = str(raw)
    major_minor = ".".join(text.split(".")[:2])
    if not isinstance(raw, str) or major_minor not in KNOWN_VERSIONS:
        raise MetadataError(
            field,
            f"unsupported version {_short(raw)}: this reader knows OME-NGFF "
            f"{', '.join(KNOWN_VERSIONS)}",
        )
    return major_minor


def parse_multiscales(attrs: Mapping[str, Any]) -> list[Multiscale]:
    """Every ``multiscales`` entry of a group's attributes, checked.

    The version comes from ``ome.version`` (0.5) or each entry's ``version`` (0.1-0.4). An
    0.1-0.4 entry without a version is read as 0.4 when its axes are objects, with a note.
    Before 0.4, missing ``axes`` mean T, C, Z, Y, X (0.1, 0.2) and there are no transforms.

    Raises:
        MetadataError: naming the field that breaks the spec.
    """
    prefix = field_prefix(attrs)
    ome = ome_attrs(attrs)
    group_version: str | None = None
    if prefix:
        if "version" not in ome:
            raise MetadataError("ome.version", "missing (OME-NGFF 0.5 states it here)")
        group_version = _version(ome["version"], "ome.version")
    entries = ome.get("multiscales")
    if not isinstance(entries, list) or not entries:
        raise MetadataError(f"{prefix}multiscales", "expected a non-empty list of images")
    labels = _channel_labels(ome.get("omero"))
    return [
        _parse_entry(entry, i, f"{prefix}multiscales[{i}]", group_version, labels)
        for i, entry in enumerate(entries)
    ]


def _channel_labels(omero: Any) -> tuple[str, ...] | None:
    # omero is transitional and optional: a malformed one only costs the channel names.
    if not isinstance(omero, Mapping) or not isinstance(omero.get("channels"), list):
        return None
    return tuple(
        str(ch.get("label") or "") if isinstance(ch, Mapping) else "" for ch in omero["channels"]
    )


def _parse_entry(
    ms: Any, index: int, field: str, group_version: str | None, labels: tuple[str, ...] | None
) -> Multiscale:
    if not isinstance(ms, Mapping):
        raise MetadataError(field, f"expected an object, got {_short(ms)}")
    notes: list[str] = []
    raw_axes = ms.get("axes")
    if group_version is not None:
        version = group_version
    elif "version" in ms:
        version = _version(ms["version"], f"{field}.version")
    elif isinstance(raw_axes, list) and raw_axes and all(isinstance(a, Mapping) for a in raw_axes):
        version = "0.4"
        notes.append(f"{field}.version is missing; read as OME-NGFF 0.4 (its axes are objects)")
    else:
        raise MetadataError(
            f"{field}.version",
            "missing, and the axes do not show which OME-NGFF version this is",
        )
    axes = _parse_axes(raw_axes, version, f"{field}.axes", notes)
    datasets = _parse_datasets(ms, len(axes), version, field)
    name = ms.get("name")
    return Multiscale(
        version=version,
        index=index,
        field=field,
        name=str(name) if name not in (None, "") else None,
        axes=axes,
        datasets=datasets,
        channel_labels=labels,
        notes=tuple(notes),
    )


def _parse_axes(raw: Any, version: str, field: str, notes: list[str]) -> tuple[Axis, ...]:
    modern = version >= "0.4"
    if raw is None:
        if modern or version == "0.3":
            raise MetadataError(field, f"missing: OME-NGFF {version} requires the axes")
        raw = list("tczyx")  # 0.1 and 0.2: always 5-D T, C, Z, Y, X
    if not isinstance(raw, list):
        raise MetadataError(field, f"expected a list, got {_short(raw)}")
    if modern and not 2 <= len(raw) <= 5:
        raise MetadataError(field, f"expected 2 to 5 axes, got {len(raw)}")
    axes: list[Axis] = []
    for i, a in enumerate(raw):
        unit: str | None = None
        name: Any
        type_: Any
        if isinstance(a, str) and not modern:
            name, type_ = a, None
        elif isinstance(a, Mapping):
            name, type_, raw_unit = a.get("name"), a.get("type"), a.get("unit")
            if raw_unit is not None:
                unit = raw_unit if isinstance(raw_unit, str) else repr(raw_unit)
            if not isinstance(name, str) or not name:
                raise MetadataError(f"{field}[{i}].name", f"expected a string, got {_short(name)}")
            if type_ is not None and not isinstance(type_, str):
                raise MetadataError(f"{field}[{i}].type", f"expected a string, got {_short(type_)}")
        else:
            raise MetadataError(f"{field}[{i}]", f"expected an axis object, got {_short(a)}")
        dim = _dim_of(name, type_)
        if dim and type_ in ("space", "time", "channel") and _TYPE_OF_DIM[dim] != type_:
            raise MetadataError(
                f"{field}[{i}].type",
                f"axis {name!r} has type {type_!r}, but an axis named {name!r} is "
                f"{_TYPE_OF_DIM[dim]}",
            )
        axes.append(Axis(name, type_, unit, dim or ""))
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise MetadataError(field, f"axis names {names} are not unique")
    letters = [a.dim for a in axes]
    if "" in letters or len(set(letters)) != len(letters):
        raise MetadataError(
            field,
            f"axes {names} cannot be mapped to T, C, Z, Y, X (tlcore reads images whose axes "
            "are a subset of t, c, z, y, x)",
        )
    if modern:
        spatial = sum(1 for a in axes if a.dim in "ZYX")
        order_ok = letters == sorted(letters, key=DIMS.index)
        if not order_ok or spatial < 2:
            notes.append(
                f"{field}: axes {names} are not in the spec's order (time, channel, then 2 or 3 "
                "space axes); read by name"
            )
    return tuple(axes)


def _dim_of(name: str, type_: str | None) -> str | None:
    if name.lower() in ("t", "c", "z", "y", "x"):
        return name.upper()
    if type_ == "time":
        return "T"
    if type_ == "channel":
        return "C"
    return None


def _parse_datasets(
    ms: Mapping[str, Any], n_axes: int, version: str, field: str
) -> tuple[Dataset, ...]:
    raw = ms.get("datasets")
    if not isinstance(raw, list) or not raw:
        raise MetadataError(f"{field}.datasets", "expected a non-empty list of resolution levels")
    modern = version >= "0.4"
    g_scale: tuple[float, ...] | None = None
    g_translation: tuple[float, ...] | None = None
    if modern and ms.get("coordinateTransformations") is not None:
        g_scale, g_translation = parse_transforms(
            ms["coordinateTransformations"], n_axes, f"{field}.coordinateTransformations"
        )
    out: list[Dataset] = []
    for j, d in enumerate(raw):
        df = f"{field}.datasets[{j}]"
        if not isinstance(d, Mapping):
            raise MetadataError(df, f"expected an object, got {_short(d)}")
        path = d.get("path")
        if not isinstance(path, str) or not path.strip("/"):
            what = "missing" if path is None else f"expected a non-empty string, got {_short(path)}"
            raise MetadataError(f"{df}.path", what)
        if any(path == other.path for other in out):
            raise MetadataError(f"{df}.path", f"{path!r} is listed twice")
        scale: tuple[float, ...] | None = None
        translation: tuple[float, ...] | None = None
        if modern:
            if "coordinateTransformations" not in d:
                raise MetadataError(
                    f"{df}.coordinateTransformations",
                    f"missing: OME-NGFF {version} requires one scale per dataset",
                )
            scale, translation = parse_transforms(
                d["coordinateTransformations"], n_axes, f"{df}.coordinateTransformations"
            )
            if g_scale is not None:
                if translation is not None or g_translation is not None:
                    t = translation or (0.0,) * n_axes
                    gt = g_translation or (0.0,) * n_axes
                    translation = tuple(a * s + b for a, s, b in zip(t, g_scale, gt))
                scale = tuple(a * b for a, b in zip(scale, g_scale))
        out.append(Dataset(path.strip("/"), scale, translation))
    return tuple(out)


def parse_transforms(
    raw: Any, n_axes: int, field: str
) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
    """The (scale, translation) of a ``coordinateTransformations`` list: exactly one ``scale``,
    optionally followed by one ``translation``, one number per axis."""
    if not isinstance(raw, list) or not raw:
        raise MetadataError(
            field, "expected a list holding one scale (optionally followed by one translation)"
        )
    if len(raw) > 2:
        raise MetadataError(
            field, f"expected one scale and at most one translation, got {len(raw)} transforms"
        )
    scale: tuple[float, ...] | None = None
    translation: tuple[float, ...] | None = None
    for k, t in enumerate(raw):
        tf = f"{field}[{k}]"
        if not isinstance(t, Mapping):
            raise MetadataError(tf, f"expected a transformation object, got {_short(t)}")
        kind = t.get("type")
        if kind not in ("scale", "translation"):
            allowed = "'scale'" if k == 0 else "'translation'"
            raise MetadataError(f"{tf}.type", f"expected {allowed}, got {_short(kind)}")
        if kind == "scale" and k != 0:
            raise MetadataError(f"{tf}.type", "a second scale: only one scale is allowed")
        if kind == "translation" and k != 1:
            raise MetadataError(f"{tf}.type", "the scale must come first, then the translation")
        if kind not in t and "path" in t:
            raise MetadataError(
                f"{tf}.path", f"a {kind} stored in a binary file is not supported; give it inline"
            )
        values = _vector(t.get(kind), n_axes, f"{tf}.{kind}")
        if kind == "scale":
            scale = values
        else:
            translation = values
    assert scale is not None  # the first transform is a scale, checked above
    return scale, translation


def _vector(raw: Any, n: int, field: str) -> tuple[float, ...]:
    if raw is None:
        raise MetadataError(field, "missing")
    if not isinstance(raw, list):
        raise MetadataError(field, f"expected a list of {n} numbers, got {_short(raw)}")
    if len(raw) != n:
        raise MetadataError(
            field, f"expected {n} numbers (one per axis), got {len(raw)}: {_short(raw)}"
        )
    values = []
    for i, v in enumerate(raw):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MetadataError(f"{field}[{i}]", f"expected a finite number, got {_short(v)}")
        values.append(float(v))
    return tuple(values)


def dataset_order(shapes: Sequence[Sequence[int]]) -> list[int]:
    """Indices of the datasets from the largest to the smallest array (stable for equal sizes).

    Raises ValueError when the shapes are not nested (some level is larger than another on one
    axis and smaller on another): then no order is the spec's "highest resolution first".
    """
    order = sorted(range(len(shapes)), key=lambda i: -math.prod(shapes[i]))
    for a, b in itertools.pairwise(order):
        if any(x < y for x, y in zip(shapes[a], shapes[b])):
            raise ValueError(
                f"array shapes {[tuple(s) for s in shapes]} are not ordered from the highest "
                "resolution to the lowest, and no reordering makes them so"
            )
    return order


@dataclass(frozen=True)
class Physical:
    """What a multiscale's numbers mean physically, per level (None where unknown)."""

    pixel_sizes: tuple[PixelSizes, ...]
    origins: tuple[PixelSizes | None, ...]
    interval: float | None
    notes: tuple[str, ...]


def physical(ms: Multiscale) -> Physical:
    """Pixel sizes and origins in micrometres per level, and the frame interval in seconds.

    A value needs both a number and a unit the reader can convert: an axis without a unit, with
    an unknown unit or a non-positive scale gives None (with a note for the last two).
    """
    notes: dict[str, None] = {}
    unit_notes: dict[str, list[str]] = {}  # one note per unit, naming every axis that uses it

    def factor(dim: str, convert: Any) -> float | None:
        found = ms.axis(dim)
        if found is None:
            return None
        value, note = convert(found[1].unit)
        if note:
            unit_notes.setdefault(note, []).append(f"{ms.field}.axes[{found[0]}].unit")
        return float(value) if value is not None else None

    um = {d: factor(d, length_um) for d in "ZYX"}
    sizes: list[PixelSizes] = []
    origins: list[PixelSizes | None] = []
    for level in range(len(ms.datasets)):
        values: list[float | None] = []
        for d in "ZYX":
            scale = ms.scale(level, d)
            if scale is not None and scale <= 0:
                notes[
                    f"{ms.field}.datasets[{level}]: scale {scale} of axis {d.lower()} is not "
                    "positive; its pixel size is unknown (None)"
                ] = None
            factor_um = um[d]
            ok = scale is not None and scale > 0 and factor_um is not None
            values.append(scale * factor_um if ok and scale and factor_um else None)
        sizes.append(PixelSizes(*values))
        if ms.datasets[level].translation is None:
            origins.append(None)
        else:
            offsets = [ms.translation(level, d) for d in "ZYX"]
            origins.append(
                PixelSizes(
                    *(
                        o * f if o is not None and f is not None else None
                        for o, f in zip(offsets, (um["Z"], um["Y"], um["X"]))
                    )
                )
            )
    interval = None
    seconds = factor("T", time_s)
    t_scale = ms.scale(0, "T")
    if t_scale is not None and seconds is not None:
        if t_scale > 0:
            interval = t_scale * seconds
        else:
            notes[
                f"{ms.field}.datasets[0]: time scale {t_scale} is not positive; the frame "
                "interval is unknown (None)"
            ] = None
    for note, fields in unit_notes.items():
        notes[f"{', '.join(fields)}: {note}"] = None
    return Physical(tuple(sizes), tuple(origins), interval, tuple(notes))


def labels_list(attrs: Mapping[str, Any]) -> list[str]:
    """The label names a ``labels`` group lists (``"labels": ["cells", ...]``)."""
    ome = ome_attrs(attrs)
    field = f"{field_prefix(attrs)}labels"
    raw = ome.get("labels")
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise MetadataError(field, f"expected a list of label names, got {_short(raw)}")
    return [n.strip("/") for n in raw]
