"""Parse the OME-XML of an OME-TIFF into what tlcore reports per image. Pure Python (stdlib XML).

Namespaces differ between OME schema versions (2008 to 2016), so elements are matched by their
local name.
"""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

from tlcore_tiff.units import length_to_um, time_to_seconds


@dataclass(frozen=True)
class OmeImage:
    """One ``<Image>`` of the OME-XML, as tlcore needs it.

    ``timestamps`` are the ``Plane/@DeltaT`` of the first plane of each timepoint in seconds
    (None unless every timepoint has one); ``interval`` is ``Pixels/@TimeIncrement`` in seconds.
    ``channel_names`` has one entry per ``<Channel>`` (None where unnamed) and
    ``channel_samples`` its SamplesPerPixel. ``modulo`` describes an OME Modulo annotation
    ("ModuloAlongT: lifetime, 8 steps"), None without one.
    """

    id: str
    name: str | None
    size_t: int
    size_c: int
    size_z: int
    pixel_sizes: tuple[float | None, float | None, float | None]
    channel_names: tuple[str | None, ...]
    channel_samples: tuple[int, ...]
    timestamps: tuple[float, ...] | None
    interval: float | None
    modulo: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(node: ET.Element, name: str) -> Iterator[ET.Element]:
    return (c for c in node if _local(c.tag) == name)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _modulo_annotations(root: ET.Element) -> dict[str, str]:
    """Annotation ID -> a short description of its Modulo elements."""
    found: dict[str, str] = {}
    for node in root.iter():
        if _local(node.tag) != "XMLAnnotation":
            continue
        parts = []
        for sub in node.iter():
            name = _local(sub.tag)
            if name.startswith("ModuloAlong"):
                kind = sub.attrib.get("Type") or sub.attrib.get("TypeDescription") or "?"
                steps = len([e for e in sub if _local(e.tag) == "Label"])
                if not steps and "End" in sub.attrib:
                    try:
                        start = float(sub.attrib.get("Start", 0))
                        step = float(sub.attrib.get("Step", 1)) or 1.0
                        steps = round((float(sub.attrib["End"]) - start) / step) + 1
                    except ValueError:
                        steps = 0
                parts.append(f"{name} ({kind}, {steps} steps)")
        if parts and "ID" in node.attrib:
            found[node.attrib["ID"]] = ", ".join(parts)
    return found


def _timestamps(pixels: ET.Element, size_t: int) -> tuple[float, ...] | None:
    """DeltaT of the first plane (lowest Z, then C) of every timepoint, in seconds."""
    best: dict[int, tuple[tuple[int, int], float]] = {}
    for plane in _children(pixels, "Plane"):
        if "DeltaT" not in plane.attrib:
            continue
        seconds = time_to_seconds(plane.attrib["DeltaT"], plane.attrib.get("DeltaTUnit"))
        if seconds is None:
            continue
        t = _int(plane.attrib.get("TheT"), 0)
        order = (_int(plane.attrib.get("TheZ"), 0), _int(plane.attrib.get("TheC"), 0))
        if t not in best or order < best[t][0]:
            best[t] = (order, seconds)
    if size_t < 1 or any(t not in best for t in range(size_t)):
        return None
    stamps = tuple(best[t][1] for t in range(size_t))
    # A non-monotonic clock is not a time axis tlcore can trust.
    if any(b < a for a, b in itertools.pairwise(stamps)):
        return None
    return stamps


def parse(xml: str) -> list[OmeImage]:
    """Every ``<Image>`` with a ``<Pixels>`` element, in document order.

    Raises:
        ValueError: the text is not well-formed XML or has no OME root.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"the OME-XML is not well-formed: {exc}") from exc
    if _local(root.tag) != "OME":
        raise ValueError(f"the XML root is <{_local(root.tag)}>, not <OME>")
    modulo = _modulo_annotations(root)
    images: list[OmeImage] = []
    for index, image in enumerate(_children(root, "Image")):
        pixels = next(_children(image, "Pixels"), None)
        if pixels is None:
            continue
        attr = pixels.attrib
        size_t = _int(attr.get("SizeT"), 1)
        sizes = tuple(
            length_to_um(attr.get(f"PhysicalSize{d}"), attr.get(f"PhysicalSize{d}Unit"))
            for d in "ZYX"
        )
        channels = list(_children(pixels, "Channel"))
        names = tuple((c.attrib.get("Name") or None) for c in channels)
        samples = tuple(max(1, _int(c.attrib.get("SamplesPerPixel"), 1)) for c in channels)
        interval = time_to_seconds(attr.get("TimeIncrement"), attr.get("TimeIncrementUnit"))
        if interval is not None and not (math.isfinite(interval) and interval > 0):
            interval = None
        refs = [r.attrib.get("ID", "") for r in _children(image, "AnnotationRef")]
        mods = [modulo[r] for r in refs if r in modulo]
        images.append(
            OmeImage(
                id=image.attrib.get("ID") or f"Image:{index}",
                name=image.attrib.get("Name") or None,
                size_t=size_t,
                size_c=_int(attr.get("SizeC"), 1),
                size_z=_int(attr.get("SizeZ"), 1),
                pixel_sizes=(sizes[0], sizes[1], sizes[2]),
                channel_names=names,
                channel_samples=samples,
                timestamps=_timestamps(pixels, size_t),
                interval=interval,
                modulo="; ".join(mods) or None,
            )
        )
    return images
