"""OME-NGFF metadata, parsed from the JSON attributes of zarr groups (0.4 and 0.5).

Pure functions on dicts: no I/O here, so every rule is testable on its own.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tlcore import DIMS

_SI_PREFIX = {
    "yocto": 1e-24, "zepto": 1e-21, "atto": 1e-18, "femto": 1e-15, "pico": 1e-12,
    "nano": 1e-9, "micro": 1e-6, "milli": 1e-3, "centi": 1e-2, "deci": 1e-1, "": 1.0,
    "deca": 1e1, "hecto": 1e2, "kilo": 1e3, "mega": 1e6, "giga": 1e9, "tera": 1e12,
    "peta": 1e15, "exa": 1e18, "zetta": 1e21, "yotta": 1e24,
}  # fmt: skip
_LENGTH_EXTRA = {"angstrom": 1e-10, "inch": 0.0254, "foot": 0.3048, "yard": 0.9144,
                 "mile": 1609.344, "parsec": 3.0857e16, "um": 1e-6, "µm": 1e-6, "μm": 1e-6,
                 "nm": 1e-9, "mm": 1e-3, "cm": 1e-2, "m": 1.0}  # fmt: skip
_TIME_EXTRA = {"minute": 60.0, "hour": 3600.0, "day": 86400.0, "s": 1.0, "ms": 1e-3,
               "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}  # fmt: skip


def _convert(unit: str | None, base: str, extra: Mapping[str, float]) -> float | None:
    """Metres (or seconds) per ``unit``; None for a missing or unknown unit."""
    if not unit:
        return None
    u = unit.strip().lower()
    if u in extra:
        return extra[u]
    for spelling in (base, base.replace("meter", "metre")):
        if u.endswith(spelling):
            prefix = u[: -len(spelling)]
            if prefix in _SI_PREFIX:
                return _SI_PREFIX[prefix]
    return None


def length_to_um(value: float, unit: str | None) -> float | None:
    """A physical length in micrometres; None when the unit is missing/unknown or the value is
    not a positive number (NGFF says a unit SHOULD be given; without one, scale 1.0 is a
    placeholder, not a measurement)."""
    factor = _convert(unit, "meter", _LENGTH_EXTRA)
    if factor is None or not math.isfinite(value) or value <= 0:
        return None
    return value * factor * 1e6


def time_to_seconds(value: float, unit: str | None) -> float | None:
    factor = _convert(unit, "second", _TIME_EXTRA)
    if factor is None or not math.isfinite(value) or value <= 0:
        return None
    return value * factor


@dataclass(frozen=True)
class Axis:
    name: str
    type: str | None
    unit: str | None

    @property
    def dim(self) -> str | None:
        """The TCZYX letter this axis maps to, or None for an axis tlcore cannot place."""
        name = self.name.lower()
        if name in ("t", "c", "z", "y", "x"):
            return name.upper()
        if self.type == "time":
            return "T"
        if self.type == "channel":
            return "C"
        return None


@dataclass(frozen=True)
class Dataset:
    path: str
    scale: tuple[float, ...]


@dataclass(frozen=True)
class Multiscale:
    """One OME-NGFF ``multiscales`` entry: an image with its resolution levels."""

    version: str
    name: str | None
    axes: tuple[Axis, ...]
    datasets: tuple[Dataset, ...]
    channel_labels: tuple[str, ...] | None

    def dims(self) -> str:
        """Native axis order as TCZYX letters (``"TYX"``); raises ValueError if not mappable."""
        letters = [a.dim for a in self.axes]
        if None in letters or len(set(letters)) != len(letters):
            names = [a.name for a in self.axes]
            raise ValueError(
                f"axes {names} cannot be mapped to T, C, Z, Y, X (tlcore reads images whose "
                "axes are a subset of t, c, z, y, x)"
            )
        return "".join(letter for letter in letters if letter)

    def axis(self, dim: str) -> tuple[int, Axis] | None:
        for i, a in enumerate(self.axes):
            if a.dim == dim:
                return i, a
        return None

    def scale_tczyx(self, level: int) -> tuple[float | None, ...]:
        scale = self.datasets[level].scale
        out: list[float | None] = []
        for dim in DIMS:
            found = self.axis(dim)
            out.append(scale[found[0]] if found and found[0] < len(scale) else None)
        return tuple(out)


def ome_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """NGFF 0.5 nests everything under ``"ome"``; 0.4 keeps it at the top."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, Mapping) else attrs


def _scale_of(transforms: Sequence[Mapping[str, Any]] | None, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for t in transforms or ():
        if t.get("type") == "scale" and isinstance(t.get("scale"), Sequence):
            values = [float(v) for v in t["scale"]]
            if len(values) == ndim:
                scale = [a * b for a, b in zip(scale, values)]
    return scale


def parse_multiscale(attrs: Mapping[str, Any]) -> Multiscale:
    """The first ``multiscales`` entry of a group's attributes (0.4 or 0.5).

    Raises ValueError, naming what is missing, when the group is not an NGFF image.
    """
    ome = ome_attrs(attrs)
    entries = ome.get("multiscales")
    if not isinstance(entries, Sequence) or not entries:
        raise ValueError("no OME-NGFF 'multiscales' metadata")
    ms = entries[0]
    version = str(ms.get("version") or ome.get("version") or attrs.get("version") or "0.4")
    raw_axes = ms.get("axes")
    if raw_axes is None:  # NGFF <= 0.3 had no axes: 5-D TCZYX
        raw_axes = list("tczyx")
    axes = tuple(
        Axis(a, None, None)
        if isinstance(a, str)
        else Axis(str(a.get("name", "")), a.get("type"), a.get("unit"))
        for a in raw_axes
    )
    raw_datasets = ms.get("datasets")
    if not isinstance(raw_datasets, Sequence) or not raw_datasets:
        raise ValueError("'multiscales' has no datasets")
    global_scale = _scale_of(ms.get("coordinateTransformations"), len(axes))
    datasets = tuple(
        Dataset(
            str(d["path"]),
            tuple(
                a * b
                for a, b in zip(
                    _scale_of(d.get("coordinateTransformations"), len(axes)), global_scale
                )
            ),
        )
        for d in raw_datasets
    )
    labels = None
    omero = ome.get("omero")
    if isinstance(omero, Mapping) and isinstance(omero.get("channels"), Sequence):
        labels = tuple(str(ch.get("label", "")) for ch in omero["channels"])
    name = ms.get("name")
    return Multiscale(version, str(name) if name else None, axes, datasets, labels)


def ome_xml_images(xml_text: str) -> list[tuple[str, str | None, list[str | None]]]:
    """(ID, Name, channel names) of every Image in an OME-XML document, in order."""
    root = ET.fromstring(xml_text)
    images: list[tuple[str, str | None, list[str | None]]] = []
    for el in root:
        if el.tag.rsplit("}", 1)[-1] != "Image":
            continue
        channels: list[str | None] = []
        for pixels in el:
            if pixels.tag.rsplit("}", 1)[-1] == "Pixels":
                channels = [
                    ch.get("Name") for ch in pixels if ch.tag.rsplit("}", 1)[-1] == "Channel"
                ]
        images.append((el.get("ID") or f"Image:{len(images)}", el.get("Name"), channels))
    return images
