"""Conformance rules on what opening costs: metadata-only (no pixels read at open) and read-only."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tlcore
from tlcore.io.source import Source
from tlcore.readers.registry import get_registry
from tlcore.testing import iowatch
from tlcore.testing.expected import (
    METADATA_HOOKS,
    Expected,
    local_path,
    pattern_name,
    sample_folder,
)
from tlcore.testing.graph import embedded_bytes
from tlcore.testing.kitbase import KitBase
from tlcore.testing.rules import rule


class MetadataRules(KitBase):
    """Rules ``metadata-only`` and ``read-only``."""

    # -- metadata only, read only --------------------------------------------------------------
    def metadata_budget(self, sample: Path) -> int:
        """Bytes a metadata hook may read from ``sample``."""
        size = iowatch.disk_size(sample)
        return max(self.metadata_floor_bytes, int(self.metadata_fraction * size))

    def test_metadata_hooks_read_no_pixels(self, expected: Expected, tmp_path: Path) -> None:
        from tlcore.lazy.reader import read_stats

        before = read_stats.snapshot()
        image = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert read_stats.snapshot() == before, rule(
            "metadata-only", "opening read pixels through an ArrayReader"
        )
        embedded = sum(embedded_bytes(v) for v in dict(image.data.dask).values())
        assert embedded <= self.max_embedded_fraction * image.data.nbytes + 1024, rule(
            "metadata-only", f"the dask graph embeds {embedded} bytes of pixels"
        )
        sample = local_path(expected)
        if sample is None:
            pytest.skip("bytes read are measured for local samples only")
        budget = self.metadata_budget(sample)
        stats = read_stats.snapshot()
        seen, over = self._hook_reads(
            sample, expected.scene, tmp_path, budget, pattern_name(expected.path)
        )
        assert read_stats.snapshot() == stats, rule(
            "metadata-only", "a metadata hook read pixels through an ArrayReader"
        )
        assert not over, rule(
            "metadata-only",
            f"budget {budget} bytes (max({self.metadata_floor_bytes}, {self.metadata_fraction}"
            f" x {iowatch.disk_size(sample)} bytes on disk)); over it: {'; '.join(over)}"
            f" (all: {'; '.join(seen)})",
        )

    def _hook_reads(
        self,
        sample: Path,
        scene: int,
        tmp_path: Path,
        budget: int,
        pattern: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Bytes each metadata hook reads from ``sample``: every line, and those over
        ``budget``. ``pattern``: the sample is a glob pattern of that name inside the folder
        ``sample``. Skips the test where ``/proc/self/io`` cannot be read."""

        def seen_as(path: Path) -> Source:
            return Source.from_any(path if pattern is None else path / pattern)

        reg = get_registry()
        # Warm up through another name for the same file: imports and per-process set-up are
        # not the hook's reads, and a cache keyed on the source does not hide them.
        alias = tmp_path / "warm-up" / sample.name
        alias.parent.mkdir(parents=True)
        alias.symlink_to(sample, target_is_directory=sample.is_dir())
        calls: dict[str, dict[str, Any]] = {
            "can_open": {},
            "list_scenes": {},
            "levels": {"scene": scene},
            "time_axis": {"scene": scene},
            "open_lazy": {"scene": scene, "level": 0},
        }
        for hook in METADATA_HOOKS:
            reg.call(self.reader_name, hook, seen_as(alias), **calls[hook])
        seen: list[str] = []
        over: list[str] = []
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
                    reg.call(self.reader_name, hook, seen_as(target), **calls[hook])
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
        return seen, over

    def test_metadata_hooks_read_no_pixels_of_a_large_sample(self, tmp_path: Path) -> None:
        """On a sample the kit writes (:meth:`write_sample`) large enough that reading every
        pixel cannot hide under the floor: :attr:`metadata_sample_shape` of random
        :attr:`sample_dtype` pixels (4 MiB, incompressible), a metadata hook may read at most
        max(:attr:`metadata_floor_bytes`, one plane's bytes)."""
        from tlcore.lazy.reader import read_stats

        rng = np.random.default_rng(23)
        dtype = np.dtype(self.sample_dtype)
        high = np.iinfo(dtype).max if dtype.kind in "ui" else 1.0
        pixels = (rng.random(self.metadata_sample_shape) * high).astype(dtype)
        directory = tmp_path / "large"
        directory.mkdir()
        path = self.write_sample(directory, pixels)
        if path is None:
            pytest.skip(
                "[tlcore rule 'metadata-only'] NOT CHECKED on a large sample: write_sample() is "
                "not implemented, so the kit cannot see a reader that reads every pixel at open"
            )
        sample = sample_folder(path)
        assert sample is not None, f"write_sample must write a local sample, got {path}"
        plane = int(np.prod(pixels.shape[-2:])) * dtype.itemsize
        budget = max(self.metadata_floor_bytes, plane)
        stats = read_stats.snapshot()
        seen, over = self._hook_reads(sample, 0, tmp_path / "hooks", budget, pattern_name(path))
        assert read_stats.snapshot() == stats, rule(
            "metadata-only", "a metadata hook read pixels through an ArrayReader"
        )
        assert not over, rule(
            "metadata-only",
            f"on a {pixels.nbytes}-byte sample the kit wrote ({pixels.shape} {dtype}), a hook "
            f"may read max({self.metadata_floor_bytes}, one plane = {plane}) = {budget} bytes; "
            f"over it: {'; '.join(over)} (all: {'; '.join(seen)}). Read the pixels in the "
            "ArrayReader, on demand, not in can_open or open_lazy",
        )

    def test_never_writes_the_samples(self, expected: Expected) -> None:
        sample = local_path(expected)
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
