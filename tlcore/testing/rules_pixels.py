"""Conformance rules on pixels: pickling without pixels, reads in another process, crops,
reference pixels and pixels of samples the kit writes."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tlcore
from tlcore.testing.expected import Expected, crop_box, subprocess_env
from tlcore.testing.kitbase import KitBase
from tlcore.testing.pickling import scan_pickle
from tlcore.testing.rules import rule


class PixelRules(KitBase):
    """Rules ``pickle-is-metadata``, ``another-process``, ``crops``, ``reference``."""

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
        box = (0, *crop_box(image.shape[1:]))
        want = np.asarray(image.data[box].compute(scheduler="synchronous"))
        again = pickle.loads(blob)
        got = np.asarray(again.data[box].compute(scheduler="synchronous"))
        assert np.array_equal(got, want), rule(
            "pickle-is-metadata", "the unpickled image reads other pixels"
        )

    def test_reads_in_another_process(self, image: tlcore.LazyImage, tmp_path: Path) -> None:
        box = (0, *crop_box(image.shape[1:]))
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
            [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env()
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
        box: tuple[Any, ...] = (t, *crop_box(image.shape[1:]))
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
