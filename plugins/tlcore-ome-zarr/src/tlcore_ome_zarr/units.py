"""OME-NGFF axis units: the spec's names (UDUNITS-2), plus common spellings read with a note.

NGFF 0.4/0.5 say a space or time axis' unit SHOULD be one of the names listed here. A unit is
what turns a scale into a physical size: without one (or with one we cannot convert) the size is
unknown (None), never a guess.
"""

from __future__ import annotations

_PREFIXES = {
    "yocto": 1e-24, "zepto": 1e-21, "atto": 1e-18, "femto": 1e-15, "pico": 1e-12,
    "nano": 1e-9, "micro": 1e-6, "milli": 1e-3, "centi": 1e-2, "deci": 1e-1, "": 1.0,
    "hecto": 1e2, "kilo": 1e3, "mega": 1e6, "giga": 1e9, "tera": 1e12, "peta": 1e15,
    "exa": 1e18, "zetta": 1e21, "yotta": 1e24,
}  # fmt: skip

#: The spec's length units, in micrometres.
LENGTH_UM: dict[str, float] = {f"{p}meter": f * 1e6 for p, f in _PREFIXES.items()}
LENGTH_UM.update({"angstrom": 1e-4, "foot": 304800.0, "inch": 25400.0, "mile": 1609344e3,
                  "parsec": 3.0856775814913673e22, "yard": 914400.0})  # fmt: skip
#: The spec's time units, in seconds.
TIME_S: dict[str, float] = {f"{p}second": f for p, f in _PREFIXES.items()}
TIME_S.update({"minute": 60.0, "hour": 3600.0, "day": 86400.0})

# Spellings seen in real stores that are not the spec's names but mean one thing only.
_LENGTH_ALIASES = {
    "micron": "micrometer", "microns": "micrometer", "um": "micrometer", "µm": "micrometer",
    "μm": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter",
    "m": "meter", "pm": "picometer", "å": "angstrom", "ångström": "angstrom",
}  # fmt: skip
_TIME_ALIASES = {
    "s": "second", "sec": "second", "ms": "millisecond", "us": "microsecond",
    "µs": "microsecond", "μs": "microsecond", "ns": "nanosecond", "min": "minute",
    "h": "hour", "hr": "hour", "d": "day",
}  # fmt: skip


def _lookup(
    unit: str, table: dict[str, float], aliases: dict[str, str], kind: str
) -> tuple[float | None, str | None]:
    if unit in table:
        return table[unit], None
    u = unit.strip().lower()
    name = aliases.get(u) or (u.replace("metre", "meter") if u.endswith("metre") else u)
    if u.endswith("s") and name not in table and u[:-1] in table:  # "micrometers", "seconds"
        name = u[:-1]
    if name in table:
        return table[name], (f"unit {unit!r} is not an OME-NGFF {kind} unit name; read as {name!r}")
    return None, f"unit {unit!r} is not an OME-NGFF {kind} unit; the {kind} is unknown (None)"


def length_um(unit: object) -> tuple[float | None, str | None]:
    """Micrometres per ``unit``, and a note when the spelling is not the spec's (or unknown).

    ``(None, None)`` for no unit at all: the scale is then a number without a physical meaning.
    """
    if unit is None:
        return None, None
    if not isinstance(unit, str):
        return None, f"unit {unit!r} is not a string; the length is unknown (None)"
    return _lookup(unit, LENGTH_UM, _LENGTH_ALIASES, "length")


def time_s(unit: object) -> tuple[float | None, str | None]:
    """Seconds per ``unit``, like :func:`length_um`."""
    if unit is None:
        return None, None
    if not isinstance(unit, str):
        return None, f"unit {unit!r} is not a string; the time is unknown (None)"
    return _lookup(unit, TIME_S, _TIME_ALIASES, "time")
