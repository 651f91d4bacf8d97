"""Unit conversion for OME and ImageJ metadata: lengths to micrometres, times to seconds.

Pure Python. An unknown or non-physical unit ("pixel", "reference frame") gives None: a value
without a physical unit is not a pixel size.
"""

from __future__ import annotations

import math

_LENGTH_UM = {
    "ym": 1e-18,
    "zm": 1e-15,
    "am": 1e-12,
    "fm": 1e-9,
    "pm": 1e-6,
    "å": 1e-4,
    "\u212b": 1e-4,  # ANGSTROM SIGN
    "angstrom": 1e-4,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "µm": 1.0,
    "\u03bcm": 1.0,  # GREEK SMALL LETTER MU
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "dm": 1e5,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25400.0,
    "in": 25400.0,
    "ft": 304800.0,
}

_TIME_S = {
    "ys": 1e-24,
    "zs": 1e-21,
    "as": 1e-18,
    "fs": 1e-15,
    "ps": 1e-12,
    "ns": 1e-9,
    "µs": 1e-6,
    "\u03bcs": 1e-6,
    "us": 1e-6,
    "ms": 1e-3,
    "cs": 1e-2,
    "ds": 1e-1,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def length_to_um(value: object, unit: str | None, default: str = "µm") -> float | None:
    """``value`` in ``unit`` as positive micrometres, or None when either is unusable.

    A negative size (some writers store the Z step's direction in its sign) is reported as its
    absolute value; zero is unknown.
    """
    number = _number(value)
    factor = _LENGTH_UM.get((unit or default).strip().lower())
    if number is None or factor is None or number == 0:
        return None
    return abs(number) * factor


def time_to_seconds(value: object, unit: str | None, default: str = "s") -> float | None:
    """``value`` in ``unit`` as seconds, or None when either is unusable."""
    number = _number(value)
    factor = _TIME_S.get((unit or default).strip().lower())
    if number is None or factor is None:
        return None
    return number * factor
