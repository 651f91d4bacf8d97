"""Writing CZI files for tests, with Zeiss' own writer (pylibCZIrw). Imports pylibCZIrw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_czi(
    path: Path,
    scenes: Sequence[np.ndarray],
    *,
    tiles: tuple[int, int] = (1, 1),
    scale_um: tuple[float, float, float] = (0.5, 0.25, 0.25),
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Write TCZYX arrays (one per scene) as a CZI with pylibCZIrw's writer.

    ``tiles=(ny, nx)`` cuts every plane into a grid of non-overlapping mosaic tiles (M indices),
    so the stitched scene equals the array. Scene ``s`` is placed at x = 100000 * s.
    """
    from pylibCZIrw import czi as pyczi

    with pyczi.create_czi(str(path), exist_ok=True) as writer:
        for s, data in enumerate(scenes):
            t_n, c_n, z_n, y_n, x_n = data.shape
            ys = np.array_split(np.arange(y_n), tiles[0])
            xs = np.array_split(np.arange(x_n), tiles[1])
            for t in range(t_n):
                for c in range(c_n):
                    for z in range(z_n):
                        for yi in ys:
                            for xi in xs:
                                tile = data[t, c, z, yi[0] : yi[-1] + 1, xi[0] : xi[-1] + 1]
                                writer.write(
                                    np.ascontiguousarray(tile),
                                    location=(100000 * s + int(xi[0]), int(yi[0])),
                                    plane={"T": t, "C": c, "Z": z},
                                    scene=s,
                                )
        n_channels = scenes[0].shape[1]
        names = channel_names or [f"ch{c}" for c in range(n_channels)]
        writer.write_metadata(
            document_name=path.stem,
            channel_names=dict(enumerate(names)),
            scale_x=scale_um[2] * 1e-6,
            scale_y=scale_um[1] * 1e-6,
            scale_z=scale_um[0] * 1e-6,
        )
    return path
