"""The chunk rule: dask chunks equal ``Level.chunks``, follow the file's storage unit, and are
never coarser than it.

The kit cannot know every format's storage unit, so it asks the file. A chunk that spans
timepoints (or a single chunk over a multi-plane array) is accepted only with evidence that the
file stores it that way: reading one timepoint (or plane) of the chunk must cost about as much
as reading the whole chunk, because the format cannot serve less (an OME-Zarr chunk holding 53
timepoints is decoded whole). When one timepoint costs much less, or the cost cannot be seen,
the chunk is coarser than the storage unit. The cost is what the read did to the sample files:
bytes read by the process plus a page per file opened (:mod:`tlcore.testing.iowatch`).
A plugin author who knows better states the storage unit in ``Expected.storage_chunks``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tlcore.testing import iowatch
from tlcore.testing.graph import array_reader

AXES = "TCZYX"
#: Reading one timepoint/plane of a chunk must cost at least this fraction of reading it whole
#: for the chunk to count as one storage unit (a chunk of k timepoints stored apart costs 1/k).
SAME_UNIT_FRACTION = 0.75


def chunk_grid_problems(chunks: Sequence[Sequence[int]]) -> list[str]:
    """Axes whose chunks are not a regular grid (all equal but the last, which may be smaller)."""
    bad = []
    for axis, sizes in zip(AXES, chunks):
        first = sizes[0]
        if any(s != first for s in sizes[:-1]) or sizes[-1] > first:
            bad.append(f"{axis} chunks {tuple(sizes)} are not a regular grid")
    return bad


@dataclass(frozen=True)
class ProbeResult:
    axis: str
    chunk: tuple[int, ...]
    chunk_cost: int
    part_cost: int
    detail: str

    @property
    def same_unit(self) -> bool:
        """The file could not serve one timepoint/plane for much less than the whole chunk."""
        # A chunk read that cost nothing seen (memory maps opened once) is no evidence.
        return self.chunk_cost > 0 and self.part_cost >= SAME_UNIT_FRACTION * self.chunk_cost


def _cost(w: iowatch.Watch) -> int:
    return (w.bytes_read or 0) + 4096 * len(w.opened)


def probe_axis(data: Any, axis: str, roots: Sequence[str | os.PathLike[str]]) -> ProbeResult:
    """Read the first chunk whole, then only index 0 of it along ``axis``, and compare what each
    read cost the sample files. Reads through the image's ArrayReader when there is one (so no
    dask slice fusion decides what is read), otherwise through dask."""
    chunk = tuple(int(c[0]) for c in data.chunks)
    whole = tuple(slice(0, n) for n in chunk)
    i = AXES.index(axis)
    part = tuple(slice(0, 1) if j == i else s for j, s in enumerate(whole))
    reader = array_reader(data)

    def read(region: tuple[slice, ...]) -> None:
        if reader is not None:
            np.asarray(reader[region])
        else:
            np.asarray(data[region].compute(scheduler="synchronous"))

    # Warm up: imports and the handle's opening are not the chunk's cost. Read the last pixel,
    # which lies in another chunk when there is one.
    read(tuple(slice(n - 1, n) for n in data.shape))
    with iowatch.watch(*roots) as part_watch:
        read(part)
    with iowatch.watch(*roots) as whole_watch:
        read(whole)
    if whole_watch.bytes_read is None:
        raise RuntimeError("/proc/self/io is not available: the chunk probe cannot measure reads")
    result = ProbeResult(
        axis,
        chunk,
        _cost(whole_watch),
        _cost(part_watch),
        f"reading the first chunk {chunk} cost {whole_watch.bytes_read} bytes read and "
        f"{len(whole_watch.opened)} file opens; reading only {axis}=0 of it cost "
        f"{part_watch.bytes_read} bytes and {len(part_watch.opened)} opens",
    )
    return result


def axes_to_probe(shape: Sequence[int], chunk: Sequence[int]) -> list[str]:
    """Where a chunk needs evidence: T when it spans timepoints; otherwise, for a single chunk
    over an array of several planes, the first of C, Z that has more than one."""
    if shape[0] > 1 and chunk[0] > 1:
        return ["T"]
    single = all(c >= n for c, n in zip(chunk, shape))
    if single:
        for axis in "CZ":
            i = AXES.index(axis)
            if shape[i] > 1:
                return [axis]
    return []
