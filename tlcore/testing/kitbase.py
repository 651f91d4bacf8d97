"""The base of the conformance suite: settings, fixtures and overridable hooks shared by the
rule families (:mod:`tlcore.testing.rules_discovery`, :mod:`~tlcore.testing.rules_metadata`,
:mod:`~tlcore.testing.rules_image`, :mod:`~tlcore.testing.rules_pixels`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import tlcore
from tlcore.readers.registry import get_registry
from tlcore.testing import iowatch
from tlcore.testing.expected import Expected, local_path
from tlcore.testing.rules import rule


class KitBase:
    """What every rule family of :class:`tlcore.testing.ReaderConformance` shares: the
    settings a plugin author tunes, the ``expected`` and ``image`` fixtures, the hooks a plugin
    author overrides (:meth:`make_garbage`, :meth:`write_sample`) and the read-only guard that
    runs around every check."""

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
    #: Shape of the sample the kit writes to measure metadata reads against a pixel payload
    #: that cannot hide under :attr:`metadata_floor_bytes` (4 MiB of uint16; a plane 240 KiB).
    metadata_sample_shape: ClassVar[tuple[int, int, int, int, int]] = (2, 2, 4, 384, 320)

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
        root = local_path(expected)
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
