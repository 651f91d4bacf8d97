"""Time axis, pixel sizes and channel names of a scene, from OME-XML or ImageJ/TIFF tags."""

from __future__ import annotations

from typing import Any

import tifffile

from tlcore import PixelSizes, TimeAxis
from tlcore_tiff import ome as ome_xml
from tlcore_tiff.units import length_to_um, time_to_seconds


def time_axis(tf: tifffile.TiffFile, image: ome_xml.OmeImage | None, size: int) -> TimeAxis:
    if image is not None:
        stamps = image.timestamps if image.timestamps and len(image.timestamps) == size else None
        return TimeAxis(size=size, timestamps=stamps, interval=image.interval)
    if tf.is_imagej and tf.imagej_metadata:
        ij = tf.imagej_metadata
        interval = time_to_seconds(ij.get("finterval"), ij.get("tunit"), default="s")
        if interval is not None and interval > 0:
            return TimeAxis(size=size, interval=interval)
    return TimeAxis(size=size)


def pixel_sizes(tf: tifffile.TiffFile, series: Any, image: ome_xml.OmeImage | None) -> PixelSizes:
    if image is not None:
        return PixelSizes(*image.pixel_sizes)
    kf = series.keyframe
    if tf.is_imagej and tf.imagej_metadata:
        ij = tf.imagej_metadata
        unit = ij.get("unit")
        if isinstance(unit, str):
            unit = unit.replace("\\u00B5", "µ")
        if not unit or str(unit).lower() in ("pixel", "pixels"):
            return PixelSizes()
        y, x = resolution_um(kf, unit)
        return PixelSizes(length_to_um(ij.get("spacing"), unit), y, x)
    unit_code = int(getattr(kf, "resolutionunit", 1) or 1)
    # 2 (inch) is left out on purpose: it is mostly a 72-dpi default, not a measurement.
    unit_names = {3: "cm", 4: "mm", 5: "µm"}
    if unit_code not in unit_names:
        return PixelSizes()
    y, x = resolution_um(kf, unit_names[unit_code])
    return PixelSizes(None, y, x)


def resolution_um(kf: Any, unit: str) -> tuple[float | None, float | None]:
    """Y and X pixel size from the X/YResolution tags (pixels per ``unit``)."""
    try:
        xres, yres = kf.get_resolution()
    except Exception:  # malformed rational tags: unknown, not an error
        return None, None
    x = length_to_um(1.0 / xres, unit) if xres else None
    y = length_to_um(1.0 / yres, unit) if yres else None
    return y, x


def channel_names(
    tf: tifffile.TiffFile,
    series: Any,
    image: ome_xml.OmeImage | None,
    scene: int,
    size_c: int,
    samples: int,
) -> tuple[str, ...]:
    letters = "RGBA" if samples in (3, 4) and series.keyframe.photometric == 2 else None
    native_c = size_c // samples
    bases: list[str | None] = [None] * native_c
    if image is not None and len(image.channel_names) == native_c:
        bases = list(image.channel_names)
    names = []
    for c in range(native_c):
        stem = bases[c] or f"Channel:{scene}:{c}"
        for s in range(samples):
            if samples == 1:
                names.append(stem)
            elif native_c == 1 and bases[c] is None and letters:
                names.append(letters[s])  # a plain RGB image: channels R, G, B
            else:
                names.append(f"{stem}:{letters[s] if letters else s}")
    return tuple(names)
