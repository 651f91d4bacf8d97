"""The conformance suite every tlcore reader plugin runs: one subclass is the whole test.

    # plugins/my-format/tests/test_conformance.py
    import pytest
    from tlcore.testing import ReaderConformance, Expected

    class TestMyFormat(ReaderConformance):
        reader_name = "my-format"

        @pytest.fixture(params=["a.myf", "b.myf"])
        def expected(self, request):
            return Expected(path=DATA / request.param, shape=(3, 2, 5, 170, 240),
                            scenes=["Image:0"], n_levels=1, interval=60.05,
                            reference=lambda: read_with_the_native_library(...))

        def make_garbage(self, tmp_path):   # optional: an unreadable input with your extension
            ...

        def write_sample(self, directory, pixels):   # optional: write TCZYX pixels as a file
            ...

Every check belongs to a rule of :data:`tlcore.testing.rules.RULES`; a failure message starts
with ``[tlcore rule '<name>']``, says what the rule asks and what the kit saw. The list, and
what a plugin author can tune, is in ``docs/plugin-authors.md``.
"""

from __future__ import annotations

import itertools
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import tlcore
from tlcore.io.source import Source
from tlcore.readers.registry import get_registry
from tlcore.testing import chunking, iowatch
from tlcore.testing.graph import array_reader, embedded_bytes
from tlcore.testing.imports import hook_module_imports
from tlcore.testing.pickling import scan_pickle
from tlcore.testing.rules import rule

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


def _crop_box(shape: Sequence[int]) -> tuple[slice, ...]:
    """A region away from the origin that spans parts of every axis."""
    box = []
    for n in shape:
        lo = n // 3
        hi = max(lo + 1, n - n // 4)
        box.append(slice(lo, hi))
    return tuple(box)


def _local(expected: Expected) -> Path | None:
    """The local sample: its file or folder, or for a glob pattern (one image read from
    several files) the folder of the files; None for a remote sample."""
    source = Source.from_any(expected.path)
    if not source.is_local:
        return None
    return Path(source.uri).parent if source.glob_matches() is not None else Path(source.uri)


def _in_alias(expected: Expected, alias: Path) -> Source:
    """The sample seen through ``alias``, a new name for :func:`_local`'s path (the pattern
    inside it, for a glob pattern)."""
    source = Source.from_any(expected.path)
    if source.glob_matches() is not None:
        return Source.from_any(alias / source.name)
    return Source.from_any(alias)


def _subprocess_env() -> dict[str, str]:
    """The environment of a child interpreter that finds what this one finds (plugins
    installed into a test's site folder included)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class ReaderConformance:
    """Base class of a plugin's conformance tests. Subclasses set :attr:`reader_name` and
    provide an ``expected`` fixture (usually parametrized over sample files)."""

    reader_name: ClassVar[str]
    #: Largest graph-embedded pixel data allowed in a lazy image, as a fraction of its size.
    max_embedded_fraction: ClassVar[float] = 0.05
    #: A metadata hook may read at most max(floor, fraction x the sample's size on disk).
    metadata_floor_bytes: ClassVar[int] = 256 * 1024
    metadata_fraction: ClassVar[float] = 0.25
    #: A pickled LazyImage may take this many bytes, plus some per timepoint (timestamps).
    max_pickle_bytes: ClassVar[int] = 64 * 1024
    pickle_bytes_per_timepoint: ClassVar[int] = 64
    #: Fail, rather than skip, samples that have no ``Expected.reference``.
    require_reference: ClassVar[bool] = False
    #: Shape (TCZYX) and dtype of the pixels handed to :meth:`write_sample`. Y and X differ so
    #: that a transposed read cannot pass.
    sample_shape: ClassVar[tuple[int, int, int, int, int]] = (3, 2, 2, 24, 20)
    sample_dtype: ClassVar[str] = "uint16"

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

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path | None:
        """Write ``pixels`` (TCZYX, :attr:`sample_shape`, :attr:`sample_dtype`) as a sample of
        your format under ``directory`` and return its path; the kit then checks that the
        plugin reads exactly these pixels. Return None (the default) when you cannot write
        your format: give ``Expected.reference`` instead."""
        return None

    @pytest.fixture
    def image(self, expected: Expected) -> tlcore.LazyImage:
        return tlcore.open_lazy(expected.path, scene=expected.scene)

    @pytest.fixture(autouse=True)
    def _samples_stay_untouched(self, request: pytest.FixtureRequest) -> Iterator[None]:
        """Around every test: no sample file opened, mapped or changed for writing, and no
        size, modification or change time of them moved (rule ``read-only``)."""
        if "expected" not in request.fixturenames:
            yield
            return
        expected: Expected = request.getfixturevalue("expected")
        root = _local(expected)
        if root is None or not root.exists():
            yield
            return
        before = iowatch.fingerprint([root], content=False)
        with iowatch.watch(root) as seen:
            yield
        problems = [str(a) for a in seen.writes]
        problems += iowatch.describe_changes(before, iowatch.fingerprint([root], content=False))
        if problems:
            pytest.fail(rule("read-only", "; ".join(problems[:10])), pytrace=False)

    # -- discovery and selection -------------------------------------------------------------
    def test_discovered_through_entry_point(self) -> None:
        records = {r.name: r for r in get_registry().records()}
        assert self.reader_name in records, rule(
            "discovery", f"{self.reader_name!r} not among the plugins found: {sorted(records)}"
        )
        record = records[self.reader_name]
        assert record.status == "loaded", rule("discovery", f"status {record.status}: {record}")
        assert record.entry_point, rule(
            "discovery", "registered by hand, not through a `tlcore.readers` entry point"
        )
        assert record.info is not None and record.info.name == self.reader_name, rule(
            "discovery", f"reader_info() names {record.info and record.info.name!r}"
        )

    def test_hook_module_is_light(self) -> None:
        record = next((r for r in get_registry().records() if r.name == self.reader_name), None)
        if record is None or not record.entry_point:
            pytest.skip("not registered through an entry point (see rule 'discovery')")
        report = hook_module_imports(record.entry_point)
        assert not report.foreign, rule(
            "light-hook-module",
            f"importing {report.entry_point} and calling reader_info() loaded "
            f"{', '.join(report.foreign)} ({len(report.added)} modules in all); import them "
            "inside the hooks instead",
        )

    def test_chosen_for_its_samples(self, expected: Expected) -> None:
        chosen = get_registry().select(Source.from_any(expected.path))
        assert chosen == self.reader_name, rule("selection", f"{expected.path} went to {chosen!r}")
        image = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert image.reader == self.reader_name, rule("selection", f"opened by {image.reader!r}")

    def test_refuses_garbage_with_a_reason(self, tmp_path: Path) -> None:
        garbage = self.make_garbage(tmp_path)
        verdict = get_registry().call(self.reader_name, "can_open", Source.from_any(garbage))
        assert verdict is not True, rule("refusal-reason", f"can_open accepted {garbage}")
        assert isinstance(verdict, str) and verdict.strip(), rule(
            "refusal-reason",
            f"can_open returned {verdict!r} for {garbage}; return a string that says why "
            "(for example 'missing RAWC magic'), which tlcore shows the user",
        )
        with pytest.raises(tlcore.TlcoreError) as info:
            tlcore.open_lazy(garbage)
        assert str(garbage) in str(info.value), rule(
            "refusal-reason", f"the error does not name the file: {info.value}"
        )

    # -- scenes ------------------------------------------------------------------------------
    def test_scenes(self, expected: Expected) -> None:
        scenes = tlcore.list_scenes(expected.path)
        assert scenes and all(isinstance(s, str) for s in scenes), rule("scenes", repr(scenes))
        assert len(set(scenes)) == len(scenes), rule("scenes", f"ids not unique: {scenes}")
        if expected.scenes is not None:
            assert scenes == list(expected.scenes), rule(
                "scenes", f"{scenes} != expected {list(expected.scenes)}"
            )
        by_id = tlcore.open_lazy(expected.path, scene=scenes[expected.scene])
        by_index = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert by_id.scene == by_index.scene == scenes[expected.scene], rule(
            "scenes", f"by id {by_id.scene!r}, by index {by_index.scene!r}"
        )
        assert by_id.scene_index == expected.scene, rule("scenes", f"{by_id.scene_index}")

    def test_bad_scene_and_level_raise(self, expected: Expected) -> None:
        n = len(tlcore.list_scenes(expected.path))
        with pytest.raises(tlcore.SceneNotFoundError, match="scene"):
            tlcore.open_lazy(expected.path, scene=n)
        with pytest.raises(tlcore.SceneNotFoundError):
            tlcore.open_lazy(expected.path, scene="no such scene \u2603")
        n_levels = len(tlcore.levels(expected.path, scene=expected.scene))
        with pytest.raises(tlcore.LevelNotFoundError):
            tlcore.open_lazy(expected.path, scene=expected.scene, level=n_levels)

    # -- metadata only, read only --------------------------------------------------------------
    def metadata_budget(self, sample: Path) -> int:
        """Bytes a metadata hook may read from ``sample``."""
        size = iowatch.disk_size(sample)
        return max(self.metadata_floor_bytes, int(self.metadata_fraction * size))

    def test_metadata_hooks_read_no_pixels(self, expected: Expected, tmp_path: Path) -> None:
        from tlcore.lazy.reader import read_stats

        reg = get_registry()
        before = read_stats.snapshot()
        image = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert read_stats.snapshot() == before, rule(
            "metadata-only", "opening read pixels through an ArrayReader"
        )
        embedded = sum(embedded_bytes(v) for v in dict(image.data.dask).values())
        assert embedded <= self.max_embedded_fraction * image.data.nbytes + 1024, rule(
            "metadata-only", f"the dask graph embeds {embedded} bytes of pixels"
        )
        sample = _local(expected)
        if sample is None:
            pytest.skip("bytes read are measured for local samples only")
        # Warm up through another name for the same file: imports and per-process set-up are
        # not the hook's reads, and a cache keyed on the source does not hide them.
        alias = tmp_path / "warm-up" / sample.name
        alias.parent.mkdir()
        alias.symlink_to(sample, target_is_directory=sample.is_dir())
        calls: dict[str, dict[str, Any]] = {
            "can_open": {},
            "list_scenes": {},
            "levels": {"scene": expected.scene},
            "time_axis": {"scene": expected.scene},
            "open_lazy": {"scene": expected.scene, "level": 0},
        }
        for hook in METADATA_HOOKS:
            reg.call(self.reader_name, hook, _in_alias(expected, alias), **calls[hook])
        budget = self.metadata_budget(sample)
        seen: list[str] = []
        over: list[str] = []
        stats = read_stats.snapshot()
        for hook in METADATA_HOOKS:
            # Each measurement goes through a new name, so no cache keyed on the source (filled
            # by the open_lazy above) hides the reads. rchar is process-wide, so another
            # thread's reads (a server, a queue) can land in one: a measurement over the budget
            # is taken again, and the least counts.
            attempts: list[tuple[int, int]] = []
            for attempt in range(3):
                target = tmp_path / f"{hook}-{attempt}" / sample.name
                target.parent.mkdir()
                target.symlink_to(sample, target_is_directory=sample.is_dir())
                with iowatch.watch(target, sample) as w:
                    reg.call(self.reader_name, hook, _in_alias(expected, target), **calls[hook])
                if w.bytes_read is None:
                    pytest.skip("/proc/self/io is not available: bytes read cannot be measured")
                attempts.append((w.bytes_read, len(w.opened)))
                if w.bytes_read <= budget:
                    break
            least, opens = min(attempts)
            line = f"{hook}: {least} bytes, {opens} opens"
            seen.append(line)
            if least > budget:
                over.append(f"{line} (least of {len(attempts)} measurements)")
        assert read_stats.snapshot() == stats, rule(
            "metadata-only", "a metadata hook read pixels through an ArrayReader"
        )
        assert not over, rule(
            "metadata-only",
            f"budget {budget} bytes (max({self.metadata_floor_bytes}, {self.metadata_fraction}"
            f" x {iowatch.disk_size(sample)} bytes on disk)); over it: {'; '.join(over)}"
            f" (all: {'; '.join(seen)})",
        )

    def test_never_writes_the_samples(self, expected: Expected) -> None:
        sample = _local(expected)
        if sample is None:
            pytest.skip("writes are watched for local samples only")
        before = iowatch.fingerprint([sample])
        with iowatch.watch(sample) as seen:
            for index in range(len(tlcore.list_scenes(expected.path))):
                tlcore.time_axis(expected.path, scene=index)
                for lv in tlcore.levels(expected.path, scene=index):
                    image = tlcore.open_lazy(expected.path, scene=index, level=lv.index)
                    for block in ((0,) * 5, tuple(n - 1 for n in image.data.numblocks)):
                        image.data.blocks[block].compute(scheduler="synchronous")
                    pickle.loads(pickle.dumps(image)).data[(0,) * 5].compute()
        problems = [str(a) for a in seen.writes]
        problems += iowatch.describe_changes(before, iowatch.fingerprint([sample]))
        assert not problems, rule("read-only", "; ".join(problems[:10]))

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
        sample = _local(expected)
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

    # -- pickling and pixels -----------------------------------------------------------------
    def test_pickle_is_metadata(self, image: tlcore.LazyImage) -> None:
        plane = image.shape[3] * image.shape[4]
        try:
            blob, scan = scan_pickle(image, plane, image.dtype)
        except (TypeError, pickle.PicklingError) as exc:
            pytest.fail(rule("pickle-is-metadata", f"cannot pickle: {exc}"), pytrace=False)
        assert not scan.pixel_like, rule(
            "pickle-is-metadata",
            f"the pickle carries {'; '.join(scan.pixel_like)}: keep paths and metadata on the "
            "reader and open the file in _open()",
        )
        limit = self.max_pickle_bytes + self.pickle_bytes_per_timepoint * image.shape[0]
        assert scan.size <= limit, rule(
            "pickle-is-metadata",
            f"a pickled LazyImage takes {scan.size} bytes, over the limit of {limit} "
            f"({self.max_pickle_bytes} + {self.pickle_bytes_per_timepoint} per timepoint); "
            f"arrays inside: {scan.arrays or 'none'}",
        )
        box = (0, *_crop_box(image.shape[1:]))
        want = np.asarray(image.data[box].compute(scheduler="synchronous"))
        again = pickle.loads(blob)
        got = np.asarray(again.data[box].compute(scheduler="synchronous"))
        assert np.array_equal(got, want), rule(
            "pickle-is-metadata", "the unpickled image reads other pixels"
        )

    def test_reads_in_another_process(self, image: tlcore.LazyImage, tmp_path: Path) -> None:
        box = (0, *_crop_box(image.shape[1:]))
        want = np.asarray(image.data[box].compute(scheduler="synchronous"))
        (tmp_path / "image.pkl").write_bytes(pickle.dumps(image))
        np.save(tmp_path / "want.npy", want)
        code = (
            "import pickle, sys, numpy as np; "
            f"img = pickle.loads(open({str(tmp_path / 'image.pkl')!r}, 'rb').read()); "
            f"box = {box!r}; "
            "got = np.asarray(img.data[box].compute(scheduler='synchronous')); "
            f"sys.exit(0 if np.array_equal(got, np.load({str(tmp_path / 'want.npy')!r})) else 3)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=_subprocess_env()
        )
        assert result.returncode == 0, rule(
            "fresh-process",
            "different pixels" if result.returncode == 3 else result.stderr[-2000:],
        )

    def test_crops_agree_with_full_read(self, image: tlcore.LazyImage) -> None:
        full = np.asarray(image.data.compute(scheduler="synchronous"))
        assert full.shape == image.shape and full.dtype == image.dtype, rule(
            "crops", f"full read {full.shape} {full.dtype}, declared {image.shape} {image.dtype}"
        )
        t = image.shape[0] - 1
        box: tuple[Any, ...] = (t, *_crop_box(image.shape[1:]))
        crop = np.asarray(image.data[box].compute(scheduler="synchronous"))
        assert np.array_equal(crop, full[box]), rule("crops", f"crop {box} != full read")
        threaded = np.asarray(image.data[box].compute(scheduler="threads"))
        assert np.array_equal(threaded, crop), rule("crops", f"threaded crop {box} differs")

    def test_pixels_match_reference(self, image: tlcore.LazyImage, expected: Expected) -> None:
        if expected.reference is None:
            message = (
                f"[tlcore rule 'reference'] NOT CHECKED for {expected.path}: no "
                "Expected.reference, so its pixels were compared only with the reader's own "
                "reads, and consistently wrong pixels (every timepoint the first one, Y and X "
                "transposed) would pass. Give reference= (a read through the native library)."
            )
            if self.require_reference:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        reference = np.asarray(expected.reference())
        full = np.asarray(image.data.compute(scheduler="synchronous"))
        assert reference.shape == full.shape, rule(
            "reference", f"reference {reference.shape}, reader {full.shape}"
        )
        assert np.array_equal(reference, full), rule(
            "reference", _first_difference(reference, full)
        )

    def test_pixels_of_a_sample_the_kit_writes(self, tmp_path: Path) -> None:
        rng = np.random.default_rng(12)
        dtype = np.dtype(self.sample_dtype)
        high = np.iinfo(dtype).max if dtype.kind in "ui" else 1.0
        pixels = (rng.random(self.sample_shape) * high).astype(dtype)
        path = self.write_sample(tmp_path, pixels)
        if path is None:
            pytest.skip(
                "[tlcore rule 'reference'] NOT CHECKED: write_sample() is not implemented, so "
                "the kit cannot check the reader against pixels it wrote itself"
            )
        image = tlcore.open_lazy(path)
        assert image.reader == self.reader_name, rule("reference", f"opened by {image.reader}")
        got = np.asarray(image.data.compute(scheduler="synchronous"))
        assert got.shape == pixels.shape, rule(
            "reference", f"read {got.shape}, wrote {pixels.shape}"
        )
        assert np.array_equal(got, pixels), rule("reference", _first_difference(pixels, got))


def _first_difference(want: np.ndarray, got: np.ndarray) -> str:
    """Where two TCZYX arrays first differ, and a hint at a common mistake."""
    if want.dtype != got.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    where = np.argwhere(want != got)
    if not len(where):
        return "no difference"
    index = tuple(int(i) for i in where[0])
    hints = []
    if want.shape[0] > 1 and all(np.array_equal(got[t], got[0]) for t in range(got.shape[0])):
        hints.append("every timepoint reads the same")
    if want.shape[3] == want.shape[4] and np.array_equal(got, np.swapaxes(want, 3, 4)):
        hints.append("Y and X are transposed")
    return (
        f"{len(where)} of {want.size} pixels differ; first at TCZYX {index}: read "
        f"{got[index]!r}, expected {want[index]!r}" + (f" ({'; '.join(hints)})" if hints else "")
    )
