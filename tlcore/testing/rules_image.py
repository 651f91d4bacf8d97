"""Conformance rules on the lazy image: TCZYX shape, time axis, levels, chunks, dtype, identity."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest

import tlcore
from tlcore.testing import chunking
from tlcore.testing.expected import Expected, local_path
from tlcore.testing.graph import array_reader
from tlcore.testing.kitbase import KitBase
from tlcore.testing.rules import rule


class ImageRules(KitBase):
    """Rules ``tczyx``, ``time-axis``, ``levels``, ``chunks``, ``dtype``, ``identity``."""

    # -- the lazy image ----------------------------------------------------------------------
    def test_tczyx(self, image: tlcore.LazyImage, expected: Expected) -> None:
        got = f"shape {image.shape}, dims {image.dims}"
        assert image.data.ndim == 5 and image.dims == "TCZYX", rule("tczyx", got)
        assert all(isinstance(n, int) and n >= 1 for n in image.shape), rule("tczyx", got)
        if expected.shape is not None:
            assert image.shape == tuple(expected.shape), rule(
                "tczyx", f"{got}, expected {tuple(expected.shape)}"
            )
        if expected.dtype is not None:
            assert str(image.dtype) == expected.dtype, rule(
                "tczyx", f"dtype {image.dtype}, expected {expected.dtype}"
            )
        assert len(image.channel_names) == image.shape[1], rule(
            "tczyx", f"{len(image.channel_names)} channel names for {image.shape[1]} channels"
        )
        if expected.channel_names is not None:
            assert list(image.channel_names) == list(expected.channel_names), rule(
                "tczyx", f"channels {image.channel_names}, expected {expected.channel_names}"
            )
        sizes = image.pixel_sizes
        assert len(sizes) == 3, rule("tczyx", f"pixel_sizes {sizes}")
        for size in sizes:
            assert size is None or (math.isfinite(size) and size > 0), rule(
                "tczyx", f"pixel size {size} in {sizes}: give None when unknown, never <= 0"
            )
        if expected.pixel_sizes is not None:
            for got_size, want in zip(sizes, expected.pixel_sizes):
                same = (got_size is None and want is None) or (
                    got_size is not None and want is not None and math.isclose(got_size, want)
                )
                assert same, rule("tczyx", f"pixel sizes {sizes}, expected {expected.pixel_sizes}")

    def test_time_axis(self, image: tlcore.LazyImage, expected: Expected) -> None:
        axis = tlcore.time_axis(expected.path, scene=expected.scene)
        assert axis.size == image.shape[0], rule(
            "time-axis", f"{axis.size} timepoints, data has {image.shape[0]}"
        )
        assert axis == image.time_axis, rule(
            "time-axis", f"time_axis() {axis} != open_lazy's {image.time_axis}"
        )
        if expected.interval is not None:
            assert axis.interval is not None and math.isclose(
                axis.interval, expected.interval, rel_tol=1e-6
            ), rule("time-axis", f"interval {axis.interval}, expected {expected.interval}")
        if expected.timestamps is not None:
            assert (axis.timestamps is not None) == expected.timestamps, rule(
                "time-axis",
                f"timestamps {'present' if axis.timestamps else 'absent'}, expected "
                f"{'present' if expected.timestamps else 'absent'}",
            )
        if axis.timestamps is not None:
            stamps = axis.timestamps
            assert all(b >= a for a, b in itertools.pairwise(stamps)), rule(
                "time-axis", f"timestamps go backwards: {stamps[:10]}..."
            )

    def test_levels(self, expected: Expected) -> None:
        levels = tlcore.levels(expected.path, scene=expected.scene)
        if expected.n_levels is not None:
            assert len(levels) == expected.n_levels, rule(
                "levels", f"{len(levels)} levels, expected {expected.n_levels}"
            )
        base = levels[0]
        assert base.index == 0 and base.downsampling == (1.0,) * 5, rule("levels", f"{base}")
        for lv in levels:
            assert all(a >= b for a, b in zip(base.shape, lv.shape)), rule(
                "levels", f"level {lv.index} {lv.shape} is larger than level 0 {base.shape}"
            )
            assert all(f >= 1.0 for f in lv.downsampling), rule("levels", f"{lv}")
            image = tlcore.open_lazy(expected.path, scene=expected.scene, level=lv.index)
            assert image.shape == lv.shape and image.level == lv.index, rule(
                "levels", f"level {lv.index} advertises {lv.shape}, opens as {image.shape}"
            )

    def test_chunks(self, expected: Expected) -> None:
        levels = tlcore.levels(expected.path, scene=expected.scene)
        for lv in levels:
            data = tlcore.open_lazy(expected.path, scene=expected.scene, level=lv.index).data
            chunksize = tuple(int(c[0]) for c in data.chunks)
            grid = chunking.chunk_grid_problems(data.chunks)
            assert not grid, rule("chunks", f"level {lv.index}: {'; '.join(grid)}")
            assert lv.chunks is not None, rule(
                "chunks",
                f"level {lv.index} has Level.chunks=None; set it to the storage chunk "
                f"(the dask chunks are {chunksize})",
            )
            assert tuple(lv.chunks) == chunksize, rule(
                "chunks", f"level {lv.index}: Level.chunks {lv.chunks} != dask chunks {chunksize}"
            )
        data = tlcore.open_lazy(expected.path, scene=expected.scene).data
        chunk = tuple(int(c[0]) for c in data.chunks)
        if expected.storage_chunks is not None:
            assert chunk == tuple(expected.storage_chunks), rule(
                "chunks", f"dask chunks {chunk} != the storage chunks {expected.storage_chunks}"
            )
            return
        axes = chunking.axes_to_probe(data.shape, chunk)
        sample = local_path(expected)
        if not axes:
            return
        if sample is None:
            pytest.skip(f"chunks {chunk} need the read probe, which runs on local samples only")
        for axis in axes:
            probe = chunking.probe_axis(data, axis, [sample])
            assert probe.same_unit, rule(
                "chunks",
                f"chunks {chunk} of shape {data.shape} group several {axis} but the file "
                f"serves one {axis} for less: {probe.detail}. Chunk one {axis} at a time, or "
                f"give Expected.storage_chunks if the file really stores them together",
            )

    def test_dtype(self, image: tlcore.LazyImage) -> None:
        reader = array_reader(image.data)
        name = type(reader).__name__ if reader is not None else self.reader_name
        for block in ((0,) * 5, tuple(n - 1 for n in image.data.numblocks)):
            try:
                got = np.asarray(image.data.blocks[block].compute(scheduler="synchronous"))
            except TypeError as exc:  # ArrayReader refuses a lossy cast
                pytest.fail(rule("dtype", f"{name}: {exc}"), pytrace=False)
            assert got.dtype == image.dtype, rule(
                "dtype", f"{name} declared {image.dtype} but block {block} computed {got.dtype}"
            )

    def test_identity(self, expected: Expected) -> None:
        first = tlcore.open_lazy(expected.path, scene=expected.scene)
        second = tlcore.open_lazy(expected.path, scene=expected.scene)
        ids = [array_reader(i.data) for i in (first, second)]
        shown = [r.identity() if r is not None else None for r in ids]
        assert first.data.name == second.data.name, rule(
            "identity",
            f"two opens of {expected.path} gave dask names {first.data.name!r} and "
            f"{second.data.name!r} (identity() {shown[0]!r} then {shown[1]!r}); build it from "
            "plain values: source.key, scene, level",
        )
        if ids[0] is not None:
            identity = ids[0].identity()
            assert pickle.loads(pickle.dumps(identity)) == identity, rule(
                "identity", f"identity() {identity!r} does not survive pickling unchanged"
            )
        scenes = tlcore.list_scenes(expected.path)
        if len(scenes) > 1:
            other = tlcore.open_lazy(expected.path, scene=(expected.scene + 1) % len(scenes))
            assert other.data.name != first.data.name, rule(
                "identity", f"scenes {first.scene!r} and {other.scene!r} share one dask name"
            )
        if len(tlcore.levels(expected.path, scene=expected.scene)) > 1:
            level1 = tlcore.open_lazy(expected.path, scene=expected.scene, level=1)
            assert level1.data.name != first.data.name, rule(
                "identity", "levels 0 and 1 share one dask name"
            )
