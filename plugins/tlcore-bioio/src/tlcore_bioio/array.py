"""The bridge's lazy array: bioio's own dask data, read one tlcore chunk at a time.

Each tlcore chunk holds one timepoint (and bioio's chunking on the other axes), and a read
slices bioio's dask array to the region and computes only that, on the calling thread: a crop
of one timepoint decodes only the bioio chunks it touches. Where a bioio reader's own storage
unit spans timepoints, that unit is decoded whole (the bridge cannot split what bioio reads).
RGB samples (bioio's S axis) become channels: C0:R, C0:G, C0:B... (R, G, B for a plain RGB
image), as in tlcore's native plugins.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcore.lazy import ArrayReader, Region


@dataclass(frozen=True)
class Spec:
    """How to rebuild a ``BioImage`` anywhere: plain values only (it pickles).

    Attributes:
        path: the local path or glob pattern.
        plugin: the bioio plugin's entry point name (``bioio-dv``).
        module: its module (``bioio_dv``), whose ``ReaderMetadata`` gives the reader class.
        glob_dims: for a glob pattern, the axis each number of a file name indexes.
        files: for a glob pattern, how many files it matched.
    """

    path: str
    plugin: str
    module: str
    glob_dims: str | None = None
    files: int | None = None


def _index_names(dims: str, path: str) -> Any:
    """bioio-tiff-glob's indexer: the numbers of a file name, as the axes ``dims`` names."""
    import os

    import pandas as pd

    numbers = [int(n) for n in re.findall(r"\d+", os.path.basename(path))]
    return pd.Series(numbers, index=list(dims))


def make_bioimage(spec: Spec) -> Any:
    """Open ``spec`` as a ``bioio.BioImage`` with its one reader class (no plugin scan)."""
    import functools

    from bioio import BioImage

    reader = importlib.import_module(spec.module).ReaderMetadata.get_reader()
    kwargs: dict[str, Any] = {}
    if spec.glob_dims is not None:
        kwargs["indexer"] = functools.partial(_index_names, spec.glob_dims)
    return BioImage(spec.path, reader=reader, **kwargs)


@dataclass(frozen=True)
class Layout:
    """One scene and level of a BioImage as tlcore sees it: TCZYX ``shape`` with samples
    folded into C, ``samples`` per native channel, the dtype, and ``chunks`` (T always 1)."""

    shape: tuple[int, int, int, int, int]
    samples: int
    dtype: str
    chunks: tuple[int, int, int, int, int]
    channel_names: tuple[str, ...]

    @classmethod
    def of(cls, bio: Any) -> Layout:
        data = bio.dask_data
        order = "".join(bio.dims.order)
        if order not in ("TCZYX", "TCZYXS"):
            raise ValueError(f"bioio gave axes {order}, expected TCZYX or TCZYXS")
        samples = int(data.shape[5]) if order == "TCZYXS" else 1
        t, c, z, y, x = (int(n) for n in data.shape[:5])
        chunk = [int(ch[0]) if ch else 1 for ch in data.chunks[:5]]
        c_chunk = chunk[1] * samples  # a native channel's samples stay together
        names = [str(n) for n in (bio.channel_names or [])]
        if len(names) != c:
            names = [f"Channel:{bio.current_scene_index}:{i}" for i in range(c)]
        return cls(
            shape=(t, c * samples, z, y, x),
            samples=samples,
            dtype=str(data.dtype),
            chunks=(1, c_chunk, chunk[2], chunk[3], chunk[4]),
            channel_names=_fold_names(names, samples),
        )


def _fold_names(names: list[str], samples: int) -> tuple[str, ...]:
    if samples == 1:
        return tuple(names)
    letters = "RGBA" if samples in (3, 4) else None
    if len(names) == 1 and letters:
        return tuple(letters[:samples])
    return tuple(f"{n}:{letters[s] if letters else s}" for n in names for s in range(samples))


class BioioArray(ArrayReader):
    """One scene and level of a bioio-readable image, TCZYX. The handle is bioio's dask array
    for that scene and level, rebuilt from the :class:`Spec` in each process."""

    def __init__(
        self, spec: Spec, scene: int, level: int, layout: Layout, identity_key: Any
    ) -> None:
        super().__init__(layout.shape, layout.dtype, layout.chunks)
        self.spec = spec
        self.scene = scene
        self.level = level
        self.samples = layout.samples
        self.key = identity_key

    def identity(self) -> tuple[Any, ...]:
        return ("bioio", self.key, self.spec.plugin, self.scene, self.level)

    def _open(self) -> Any:
        bio = make_bioimage(self.spec)
        bio.set_scene(self.scene)
        bio.set_resolution_level(self.level)
        data = bio.dask_data
        if tuple(data.shape[:5]) != (
            *self.shape[:1],
            self.shape[1] // self.samples,
            *self.shape[2:],
        ):
            raise ValueError(
                f"{self.spec.path}: bioio ({self.spec.plugin}) now reports shape {data.shape} "
                f"for scene {self.scene} level {self.level}, not {self.shape} as when opened"
            )
        return data

    def _read(self, handle: Any, region: Region) -> np.ndarray:
        t, c, z, y, x = region
        s = self.samples
        if s == 1:
            block = handle[t, c, z, y, x]
        else:  # native channels c0..c1 hold the folded channels c.start..c.stop
            c0, c1 = c.start // s, -(-c.stop // s)
            block = handle[t, c0:c1, z, y, x, :]
        out = np.asarray(block.compute(scheduler="synchronous"))
        if s > 1:
            out = np.moveaxis(out, 5, 2).reshape(out.shape[0], out.shape[1] * s, *out.shape[2:5])
            out = out[:, c.start - c0 * s : c.stop - c0 * s]
        return out
