"""The conformance suite every tlcore reader plugin runs: one subclass is the whole test.

    # plugins/my-format/tests/test_conformance.py
    import pytest
    from tlcore.testing import ReaderConformance, Expected

    class TestMyFormat(ReaderConformance):
        reader_name = "my-format"

        @pytest.fixture(params=["a.myf", "b.myf"])
        def expected(self, request):
            return Expected(path=DATA / request.param, shape=(3, 2, 5, 170, 240),
                            scenes=["Image:0"], n_levels=1, interval=60.05)

        def make_garbage(self, tmp_path):   # optional: an unreadable file with your extension
            ...

It checks: the plugin is discovered through its entry point and loads; it is chosen for its
samples without ``reader=``; it refuses garbage with a reason; scenes resolve by index and id;
opening is lazy; data is 5-D TCZYX with the expected shape; the time axis agrees with the data
and the expected interval; level 0 is the largest and every level opens with its advertised
shape; the image pickles small and reads the same pixels after unpickling in a fresh process;
crops agree with a full read (and with the plugin author's independent ``reference`` read,
when given); bad scenes and levels raise tlcore's errors.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import tlcore
from tlcore.registry import get_registry
from tlcore.source import Source


@dataclass
class Expected:
    """What a sample file holds, as the plugin author knows it independently.

    ``None`` means "do not check". ``shape`` is level 0 of ``scene`` in TCZYX.
    ``reference`` returns the full level-0 TCZYX array of ``scene`` read another way
    (the native library directly), for the pixel agreement check.
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
    reference: Callable[[], np.ndarray] | None = None


def _crop_box(shape: Sequence[int]) -> tuple[slice, ...]:
    """A region away from the origin that spans parts of every axis."""
    box = []
    for n in shape:
        lo = n // 3
        hi = max(lo + 1, n - n // 4)
        box.append(slice(lo, hi))
    return tuple(box)


def _embedded_bytes(node: Any, depth: int = 0) -> int:
    """Bytes of numpy arrays held in a dask graph value (old-style tuples or Task objects)."""
    if isinstance(node, np.ndarray):
        return int(node.nbytes)
    if depth > 8:
        return 0
    if isinstance(node, (tuple, list)):
        return sum(_embedded_bytes(n, depth + 1) for n in node)
    if isinstance(node, dict):
        return sum(_embedded_bytes(n, depth + 1) for n in node.values())
    total = 0
    for attr in ("value", "args"):  # dask's DataNode.value, Task.args
        if hasattr(node, attr) and not callable(getattr(node, attr)):
            total += _embedded_bytes(getattr(node, attr), depth + 1)
    kwargs = getattr(node, "kwargs", None)
    if isinstance(kwargs, dict):
        total += _embedded_bytes(kwargs, depth + 1)
    return total


class ReaderConformance:
    """Base class of a plugin's conformance tests. Subclasses set :attr:`reader_name` and
    provide an ``expected`` fixture (usually parametrized over sample files)."""

    reader_name: ClassVar[str]
    #: Largest graph-embedded pixel data allowed in a lazy image, as a fraction of its size.
    max_embedded_fraction: ClassVar[float] = 0.05

    @pytest.fixture
    def expected(self) -> Expected:
        raise NotImplementedError("define an `expected` fixture returning tlcore.testing.Expected")

    def make_garbage(self, tmp_path: Path) -> Path:
        """An unreadable source with the plugin's extension (override for directory formats)."""
        info = get_registry().info(self.reader_name)
        ext = next((e for e in info.extensions if e != "*"), ".bin")
        path = tmp_path / f"garbage{ext}"
        path.write_bytes(b"this is not an image\x00" * 64)
        return path

    @pytest.fixture
    def image(self, expected: Expected) -> tlcore.LazyImage:
        return tlcore.open_lazy(expected.path, scene=expected.scene)

    # -- discovery and selection -------------------------------------------------------------
    def test_discovered_through_entry_point(self) -> None:
        records = {r.name: r for r in get_registry().records()}
        assert self.reader_name in records, f"{self.reader_name!r} not among {sorted(records)}"
        record = records[self.reader_name]
        assert record.status == "loaded", record.error
        assert record.entry_point, "the plugin must be registered through an entry point"
        assert record.info is not None and record.info.name == self.reader_name

    def test_chosen_for_its_samples(self, expected: Expected) -> None:
        assert get_registry().select(Source.from_any(expected.path)) == self.reader_name
        image = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert image.reader == self.reader_name

    def test_refuses_garbage_with_a_reason(self, tmp_path: Path) -> None:
        garbage = self.make_garbage(tmp_path)
        verdict = get_registry().call(self.reader_name, "can_open", Source.from_any(garbage))
        assert verdict is not True, "can_open accepted garbage"
        with pytest.raises(tlcore.TlcoreError) as info:
            tlcore.open_lazy(garbage)
        assert str(garbage) in str(info.value)

    # -- scenes ------------------------------------------------------------------------------
    def test_scenes(self, expected: Expected) -> None:
        scenes = tlcore.list_scenes(expected.path)
        assert scenes and all(isinstance(s, str) for s in scenes)
        assert len(set(scenes)) == len(scenes), f"scene ids are not unique: {scenes}"
        if expected.scenes is not None:
            assert scenes == list(expected.scenes)
        by_id = tlcore.open_lazy(expected.path, scene=scenes[expected.scene])
        by_index = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert by_id.scene == by_index.scene == scenes[expected.scene]
        assert by_id.scene_index == expected.scene

    def test_bad_scene_and_level_raise(self, expected: Expected) -> None:
        n = len(tlcore.list_scenes(expected.path))
        with pytest.raises(tlcore.SceneNotFoundError, match="scene"):
            tlcore.open_lazy(expected.path, scene=n)
        with pytest.raises(tlcore.SceneNotFoundError):
            tlcore.open_lazy(expected.path, scene="no such scene \u2603")
        n_levels = len(tlcore.levels(expected.path, scene=expected.scene))
        with pytest.raises(tlcore.LevelNotFoundError):
            tlcore.open_lazy(expected.path, scene=expected.scene, level=n_levels)

    # -- the lazy image ----------------------------------------------------------------------
    def test_open_is_lazy(self, expected: Expected) -> None:
        from tlcore.lazy import read_stats

        before = read_stats.snapshot()
        image = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert read_stats.snapshot() == before, "opening read pixels through an ArrayReader"
        embedded = sum(_embedded_bytes(v) for v in dict(image.data.dask).values())
        assert embedded <= self.max_embedded_fraction * image.data.nbytes + 1024, (
            f"the dask graph embeds {embedded} bytes of pixels: open_lazy read data eagerly"
        )

    def test_tczyx(self, image: tlcore.LazyImage, expected: Expected) -> None:
        assert image.data.ndim == 5 and image.dims == "TCZYX"
        assert all(isinstance(n, int) and n >= 1 for n in image.shape)
        if expected.shape is not None:
            assert image.shape == tuple(expected.shape)
        if expected.dtype is not None:
            assert str(image.dtype) == expected.dtype
        assert len(image.channel_names) == image.shape[1]
        if expected.channel_names is not None:
            assert list(image.channel_names) == list(expected.channel_names)
        assert len(image.pixel_sizes) == 3
        for size in image.pixel_sizes:
            assert size is None or (math.isfinite(size) and size > 0)
        if expected.pixel_sizes is not None:
            for got, want in zip(image.pixel_sizes, expected.pixel_sizes):
                assert (got is None and want is None) or got == pytest.approx(want, rel=1e-6)

    def test_time_axis(self, image: tlcore.LazyImage, expected: Expected) -> None:
        axis = tlcore.time_axis(expected.path, scene=expected.scene)
        assert axis.size == image.shape[0]
        assert axis == image.time_axis
        if expected.interval is not None:
            assert axis.interval == pytest.approx(expected.interval, rel=1e-6)
        if expected.timestamps is not None:
            assert (axis.timestamps is not None) == expected.timestamps
        if axis.timestamps is not None:
            assert all(b >= a for a, b in zip(axis.timestamps, axis.timestamps[1:]))

    def test_levels(self, expected: Expected) -> None:
        levels = tlcore.levels(expected.path, scene=expected.scene)
        if expected.n_levels is not None:
            assert len(levels) == expected.n_levels
        base = levels[0]
        assert base.index == 0 and base.downsampling == (1.0,) * 5
        for lv in levels:
            assert all(a >= b for a, b in zip(base.shape, lv.shape)), "level 0 must be largest"
            assert all(f >= 1.0 for f in lv.downsampling)
            image = tlcore.open_lazy(expected.path, scene=expected.scene, level=lv.index)
            assert image.shape == lv.shape and image.level == lv.index

    # -- pickling and pixels -----------------------------------------------------------------
    def test_pickles_without_data_and_reads_in_another_process(
        self, image: tlcore.LazyImage, tmp_path: Path
    ) -> None:
        box = (0, *_crop_box(image.shape[1:]))
        want = np.asarray(image.data[box].compute(scheduler="synchronous"))
        blob = pickle.dumps(image)
        assert len(blob) < max(image.data.nbytes // 4, 256 * 1024), (
            f"a pickled LazyImage takes {len(blob)} bytes: it must not carry pixels"
        )
        again = pickle.loads(blob)
        assert np.array_equal(np.asarray(again.data[box].compute(scheduler="synchronous")), want)
        (tmp_path / "image.pkl").write_bytes(blob)
        np.save(tmp_path / "want.npy", want)
        code = (
            "import pickle, sys, numpy as np; "
            f"img = pickle.loads(open({str(tmp_path / 'image.pkl')!r}, 'rb').read()); "
            f"box = {box!r}; "
            "got = np.asarray(img.data[box].compute(scheduler='synchronous')); "
            f"sys.exit(0 if np.array_equal(got, np.load({str(tmp_path / 'want.npy')!r})) else 3)"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]

    def test_crops_agree_with_full_read(self, image: tlcore.LazyImage, expected: Expected) -> None:
        full = np.asarray(image.data.compute(scheduler="synchronous"))
        assert full.shape == image.shape and full.dtype == image.dtype
        t = image.shape[0] - 1
        box: tuple[Any, ...] = _crop_box(image.shape[1:])
        crop = np.asarray(image.data[(t, *box)].compute(scheduler="synchronous"))
        assert np.array_equal(crop, full[(t, *box)])
        threaded = np.asarray(image.data[(t, *box)].compute(scheduler="threads"))
        assert np.array_equal(threaded, crop)
        if expected.reference is not None:
            reference = np.asarray(expected.reference())
            assert reference.shape == full.shape
            assert np.array_equal(reference, full)
