"""The cores this process may decode on.

A DataLoader runs several worker processes on one machine; each decoding on every core only
adds switching (measured: about 10% more CPU per crop with 2 workers x 2 threads on 2 cores).
The training tier says how many processes share the cores (:func:`set_sharing`); decoders ask
:func:`decode_threads`. The count is per process: a forked worker starts from its parent's and
sets its own.
"""

from __future__ import annotations

import os

_sharing = 1


def available_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def set_sharing(processes: int) -> None:
    """Declare that ``processes`` processes (this one included) decode on the same cores."""
    global _sharing
    _sharing = max(1, int(processes))


def decode_threads() -> int:
    """This process's share of the cores: ``available_cores() // processes``, at least 1."""
    return max(1, available_cores() // _sharing)
