"""What a plugin author tells the conformance kit about a sample (:class:`Expected`), and the
small helpers the kit's rule families share."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcore.io.source import Source

METADATA_HOOKS = ("can_open", "list_scenes", "levels", "time_axis", "open_lazy")


@dataclass
class Expected:
    """What a sample holds, as the plugin author knows it independently of the plugin.

    ``None`` means "do not check". Attributes:
        path: the sample (a file, a folder for directory formats, or a URL).
        shape: level 0 of ``scene``, in T, C, Z, Y, X.
        scenes: every scene id, in file order.
        scene: the index of the scene the other fields describe.
        n_levels: number of resolution levels of that scene.
        interval: nominal frame interval in seconds.
        timestamps: a flag: True when the file records per-frame times (so the time axis must
            have ``timestamps``), False when it must not.
        dtype: numpy dtype name (``"uint16"``).
        channel_names: one per channel.
        pixel_sizes: z, y, x in micrometres (``None`` entries where the file has none).
        storage_chunks: the file's own storage unit in T, C, Z, Y, X (a zarr chunk, an ND2
            frame), when you know it: level 0's dask chunks must equal it. Without it the kit
            measures whether chunks are coarser than the storage (see rule ``chunks``).
        reference: returns the full level-0 TCZYX array of ``scene`` read another way (the
            native library directly, ``np.load``...), for the pixel check of rule
            ``reference``. Without one, pixels are only compared with the reader's own reads.
    """

    path: str | os.PathLike[str]
    shape: Sequence[int] | None = None
    scenes: Sequence[str] | None = None
    scene: int = 0
    n_levels: int | None = None
    interval: float | None = None
    timestamps: bool | None = None
    dtype: str | None = None
    channel_names: Sequence[str] | None = None
    pixel_sizes: Sequence[float | None] | None = None
    storage_chunks: Sequence[int] | None = None
    reference: Callable[[], np.ndarray] | None = None


def crop_box(shape: Sequence[int]) -> tuple[slice, ...]:
    """A region away from the origin that spans parts of every axis."""
    box = []
    for n in shape:
        lo = n // 3
        hi = max(lo + 1, n - n // 4)
        box.append(slice(lo, hi))
    return tuple(box)


def local_path(expected: Expected) -> Path | None:
    """The local sample: its file or folder, or for a glob pattern (one image read from
    several files) the folder of the files; None for a remote sample."""
    return sample_folder(expected.path)


def sample_folder(path: Any) -> Path | None:
    """:func:`local_path` of a sample path."""
    source = Source.from_any(path)
    if not source.is_local:
        return None
    return Path(source.uri).parent if source.glob_matches() is not None else Path(source.uri)


def pattern_name(path: Any) -> str | None:
    """The glob pattern's name (``*.tif``) when ``path`` is one, else None: seen through
    another name for its folder, the sample is that folder plus this name."""
    source = Source.from_any(path)
    return source.name if source.glob_matches() is not None else None


def subprocess_env() -> dict[str, str]:
    """The environment of a child interpreter that finds what this one finds (plugins
    installed into a test's site folder included)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env
