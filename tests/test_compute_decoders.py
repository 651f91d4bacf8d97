"""TLCORE_DECODER: tensorstore or zarrs read the one region with the plugin's pixels; a process
forked after the decoder was used reads through the plugin instead; unknown names fail."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

import tlcore
from tlcore import decoders
from tlcore.compute import compute, find_region
from tlcore.lazy import read_stats

SHAPE = (2, 2, 8, 64, 96)
CHUNKS = (1, 1, 4, 32, 32)


@pytest.fixture
def store(synthetic_store: Callable[..., Path]) -> Path:
    return synthetic_store(shape=SHAPE, chunks=CHUNKS)


@pytest.mark.parametrize("name", decoders.DECODERS)
def test_decoder_reads_the_same_pixels(
    store: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(name)
    raw = zarr.open_array(str(store), path="0", mode="r")
    image = tlcore.open_lazy(store)
    box = (1, slice(None), slice(1, 7), slice(5, 60), slice(20, 90))
    value = image.data[box]
    monkeypatch.setenv(decoders.DECODER_ENV, name)
    handle = decoders.handle_for(find_region(value).reader)  # type: ignore[union-attr]
    assert handle is not None and not isinstance(handle, type(image.data))
    read_stats.reset()
    got = compute(value)
    assert read_stats.snapshot()[0] == 1
    assert got.dtype == raw.dtype and np.array_equal(got, raw[box])
    picked = image.data[0][[1, 0], 2:5]
    assert np.array_equal(compute(picked), raw[0][[1, 0], 2:5])


def test_no_decoder_by_default(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(decoders.DECODER_ENV, raising=False)
    region = find_region(tlcore.open_lazy(store).data[0, 0])
    assert region is not None and decoders.handle_for(region.reader) is None
    monkeypatch.setenv(decoders.DECODER_ENV, "fastest")
    with pytest.raises(ValueError, match="tensorstore"):
        decoders.handle_for(region.reader)


def test_forked_child_of_a_user_reads_through_the_plugin(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("zarrs")
    monkeypatch.setenv(decoders.DECODER_ENV, "zarrs")
    value = tlcore.open_lazy(store).data[1, 1, 2:6, 10:50, 30:70]
    region = find_region(value)
    assert region is not None and decoders.handle_for(region.reader) is not None
    want = zarr.open_array(str(store), path="0", mode="r")[1, 1, 2:6, 10:50, 30:70]
    pid = os.fork()
    if pid == 0:  # the child only checks and reads through the plugin, then leaves at once
        ok = False
        try:
            with pytest.warns(RuntimeWarning, match="forked"):
                refused = decoders.handle_for(region.reader) is None
            ok = refused and np.array_equal(compute(value), want)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
