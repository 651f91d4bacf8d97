"""TLCORE_DECODER: tensorstore, zarrs or tlcore read the one region with the plugin's pixels; a
process forked after tensorstore or zarrs was used reads through the plugin instead, while
tlcore's own decoder keeps working there; unknown names fail."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import tlcore
from tlcore import decoders
from tlcore.lazy import read_stats
from tlcore.lazy.compute import compute, find_region

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


def test_tlcore_decodes_by_default_and_zarr_is_one_setting_away(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlcore import zarrfast

    monkeypatch.delenv(decoders.DECODER_ENV, raising=False)
    image = tlcore.open_lazy(store)
    region = find_region(image.data[0, 0])
    assert region is not None
    assert isinstance(decoders.handle_for(region.reader), zarrfast.FastZarrArray)
    raw = zarr.open_array(str(store), path="0", mode="r")
    zarrfast.stats.reset()
    assert np.array_equal(compute(image.data[1, :, 2:7, 9:50]), raw[1, :, 2:7, 9:50])
    assert zarrfast.stats.snapshot()["chunks"] > 0  # read by tlcore's decoder
    # The dask fallback's per-chunk reads go through it too.
    zarrfast.stats.reset()
    lazy = image.data[0, 1, :, 3:40]
    assert np.array_equal(compute(lazy, direct=False), raw[0, 1, :, 3:40])
    assert zarrfast.stats.snapshot()["chunks"] > 0
    monkeypatch.setenv(decoders.DECODER_ENV, "zarr")  # the way back to zarr's own read
    assert decoders.handle_for(region.reader) is None
    zarrfast.stats.reset()
    assert np.array_equal(compute(image.data[1, :, 2:7, 9:50]), raw[1, :, 2:7, 9:50])
    assert zarrfast.stats.snapshot()["chunks"] == 0
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


# -- TLCORE_DECODER=tlcore: tlcore.decoders.zarrfast, safe under fork -------------------------
def test_tlcore_decoder_reads_zarr_v2_and_v3(
    synthetic_store: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tlcore import zarrfast

    monkeypatch.setenv(decoders.DECODER_ENV, "tlcore")
    for version in ("0.5", "0.4"):
        store = synthetic_store(f"v{version}.ome.zarr", shape=SHAPE, chunks=CHUNKS, version=version)
        raw = zarr.open_array(str(store), path="0", mode="r")
        value = tlcore.open_lazy(store).data[1, :, 2:7, 3:61, 17:95]
        region = find_region(value)
        assert region is not None
        assert isinstance(decoders.handle_for(region.reader), zarrfast.FastZarrArray)
        zarrfast.stats.reset()
        assert np.array_equal(compute(value), raw[1, :, 2:7, 3:61, 17:95])
        assert zarrfast.stats.snapshot()["chunks"] > 0  # read by zarrfast, not by zarr


def test_tlcore_decoder_in_a_child_forked_after_use(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from tlcore import zarrfast

    monkeypatch.setenv(decoders.DECODER_ENV, "tlcore")
    monkeypatch.setenv(zarrfast.THREADS_ENV, "2")  # the parent's pool threads exist at fork
    value = tlcore.open_lazy(store).data[1, 1, 2:6, 10:50, 30:70]
    want = zarr.open_array(str(store), path="0", mode="r")[1, 1, 2:6, 10:50, 30:70]
    assert np.array_equal(compute(value), want)
    pid = os.fork()
    if pid == 0:  # the child checks and leaves at once, whatever happens
        ok = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no "forked" refusal
                zarrfast.stats.reset()
                ok = np.array_equal(compute(value), want) and zarrfast.stats.snapshot()["chunks"]
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_tlcore_decoder_leaves_unsupported_arrays_to_zarr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zarr.codecs import Crc32cCodec, ZstdCodec

    # Inner chunks with a crc32c after the compressor: a codec chain tlcore does not decode.
    path = tmp_path / "sharded.ome.zarr"
    root = zarr.open_group(str(path), mode="w-", zarr_format=3)
    array = root.create_array(
        "0",
        shape=SHAPE,
        chunks=CHUNKS,
        shards=(1, 1, 8, 64, 96),
        compressors=[ZstdCodec(), Crc32cCodec()],
        dtype="uint16",
        dimension_names=list("tczyx"),
    )
    array[...] = np.arange(np.prod(SHAPE), dtype="uint16").reshape(SHAPE)
    axes = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        *({"name": d, "type": "space"} for d in "zyx"),
    ]
    scale = [{"type": "scale", "scale": [1.0] * 5}]
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}
        ],
    }
    monkeypatch.setenv(decoders.DECODER_ENV, "tlcore")
    value = tlcore.open_lazy(path).data[0, 1, 1:7, 5:60, 20:90]
    region = find_region(value)
    assert region is not None and decoders.handle_for(region.reader) is None
    assert np.array_equal(compute(value), array[0, 1, 1:7, 5:60, 20:90])


def _child_reads(value: Any, want: np.ndarray) -> bool:
    """Whether a child forked now reads ``value`` as ``want`` (through tlcore's decoder)."""
    from tlcore import zarrfast

    pid = os.fork()
    if pid == 0:  # the child checks and leaves at once, whatever happens
        ok = False
        try:
            zarrfast.stats.reset()
            ok = bool(np.array_equal(compute(value), want) and zarrfast.stats.snapshot()["chunks"])
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    return os.waitstatus_to_exitcode(done[1]) == 0


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_a_store_rewritten_in_place_is_read_with_its_new_layout(
    synthetic_store: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """A dataset regenerated at the same path (other chunks, other data), then opened again in
    the same process: tlcore's decoder reads the new layout, here and in a forked child."""
    from tlcore import zarrfast

    monkeypatch.setenv(decoders.DECODER_ENV, "tlcore")
    box = (1, slice(None), slice(1, 7), slice(5, 60), slice(20, 90))
    store = synthetic_store(shape=SHAPE, chunks=CHUNKS, version=version, seed=0)
    old = tlcore.open_lazy(store).data[box]
    assert np.array_equal(compute(old), zarr.open_array(str(store), path="0", mode="r")[box])
    assert _child_reads(old, zarr.open_array(str(store), path="0", mode="r")[box])
    shutil.rmtree(store)
    store = synthetic_store(shape=SHAPE, chunks=(1, 2, 3, 16, 40), version=version, seed=1)
    want = zarr.open_array(str(store), path="0", mode="r")[box]
    image = tlcore.open_lazy(store)
    region = find_region(image.data[box])
    assert region is not None
    fast = decoders.handle_for(region.reader)
    assert isinstance(fast, zarrfast.FastZarrArray) and fast.chunks == (1, 2, 3, 16, 40)
    assert np.array_equal(compute(image.data[box]), want)
    assert _child_reads(image.data[box], want)
