"""tlcore.lazy.daskarray: a plain dask ``.compute()`` of a crop of an ``as_dask`` array is one
region read of its ArrayReader, with numpy's pixels for every kind of index, on real TIFF files
written by tifffile; other dask operations keep working and keep their values."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile

import tlcore
from tlcore.lazy import as_dask, daskarray, read_stats, reader_of
from tlcore.lazy.compute import compute, find_region
from tlcore.lazy.daskarray import ReadRegion
from tlcore.lazy.regions import ReaderView

SHAPE = (2, 3, 12, 40, 36)  # T, C, Z, Y, X
CHUNKS = (1, 1, 3, 8, 8)


def _pixels() -> np.ndarray:
    rng = np.random.default_rng(23)
    return rng.integers(0, 60000, size=SHAPE, dtype=np.uint16)


def _written(kind: str, folder: Path) -> tuple[Any, np.ndarray]:
    """(the plugin's dask array, re-chunked into many small chunks; the pixels written)."""
    pixels = _pixels()
    path = folder / ("a.tif" if kind == "imagej" else "a.ome.tif")
    if kind == "imagej":
        tzcyx = np.ascontiguousarray(pixels.transpose(0, 2, 1, 3, 4))
        tifffile.imwrite(path, tzcyx, imagej=True, metadata={"axes": "TZCYX"})
    else:
        tile = (16, 16) if kind == "ome-tiles" else None
        tifffile.imwrite(path, pixels, ome=True, tile=tile, metadata={"axes": "TCZYX"})
    reader = reader_of(tlcore.open_lazy(path).data)
    assert reader is not None
    return as_dask(reader, chunks=CHUNKS), pixels


@pytest.fixture(params=["ome-strips", "ome-tiles", "imagej"])
def tiff(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, np.ndarray]:
    """Each kind of TIFF tlcore reads."""
    return _written(request.param, tmp_path)


@pytest.fixture
def strips(tmp_path: Path) -> tuple[Any, np.ndarray]:
    """One kind, for what does not depend on the layout."""
    return _written("ome-strips", tmp_path)


def _reads(fn: Callable[[], Any]) -> tuple[Any, int, int]:
    read_stats.reset()
    out = fn()
    regions, nbytes = read_stats.snapshot()
    return out, regions, nbytes


def test_a_plain_compute_of_a_crop_is_one_read_of_the_crop(tiff: tuple[Any, np.ndarray]) -> None:
    data, pixels = tiff
    crop = data[1, 2, 2:11, 5:37, 3:30]  # 4 x 5 x 4 = 80 chunks touched
    assert crop.numblocks == (4, 5, 4)
    for scheduler in ("threads", "synchronous"):
        got, regions, nbytes = _reads(lambda: crop.compute(scheduler=scheduler))  # noqa: B023
        assert got.dtype == np.uint16 and np.array_equal(got, pixels[1, 2, 2:11, 5:37, 3:30])
        assert regions == 1 and nbytes == got.nbytes
        assert got.flags.owndata and got.flags.writeable  # as dask's own result: a fresh array
    assert crop.chunks == ((1, 3, 3, 2), (3, 8, 8, 8, 5), (5, 8, 8, 6))  # dask's own grid


def test_the_plugins_own_array_is_one_read_too(tmp_path: Path) -> None:
    pixels = _pixels()
    path = tmp_path / "b.ome.tif"
    tifffile.imwrite(path, pixels, ome=True, metadata={"axes": "TCZYX"})
    data = tlcore.open_lazy(path).data
    crop = data[0, 1, 3:9, 10:30, 4:20]
    got, regions, _ = _reads(crop.compute)
    assert regions == 1 and np.array_equal(got, pixels[0, 1, 3:9, 10:30, 4:20])


def _random_index(rng: np.random.Generator, n: int) -> Any:
    kind = rng.integers(0, 6)
    if kind == 0:
        return int(rng.integers(-n, n))
    if kind == 1:
        return slice(None)
    a, b = sorted(int(v) for v in rng.integers(-n - 2, n + 2, size=2))
    if kind == 2:
        return slice(a, b)
    if kind == 3:
        return slice(a, b, int(rng.integers(2, 5)))
    if kind == 4:
        return slice(b, a, -int(rng.integers(1, 4)))
    return sorted(set(int(v) for v in rng.integers(0, n, size=int(rng.integers(1, 4)))))


def test_many_random_indexes_give_dasks_and_numpys_pixels(tiff: tuple[Any, np.ndarray]) -> None:
    data, pixels = tiff
    reference = da.from_array(pixels, chunks=CHUNKS)
    rng = np.random.default_rng(0)
    for _ in range(30):
        key = tuple(_random_index(rng, n) for n in SHAPE)
        if sum(isinstance(k, list) for k in key) > 1:  # dask allows one list per index
            key = tuple(k[0] if isinstance(k, list) else k for k in key)
        value = data[key]
        got, regions, _ = _reads(value.compute)
        # dask's own tasks, unoptimised, on the same file and on the pixels in memory
        want = value.compute(optimize_graph=False)
        assert np.array_equal(reference[key].compute(optimize_graph=False), want), key
        assert got.shape == want.shape == value.shape and got.dtype == want.dtype, key
        assert np.array_equal(got, want), key
        basic = not any(isinstance(k, list) for k in key)
        # numpy moves a list and integers apart to the front (dask does not), and dask keeps
        # some out-of-range backward slices that numpy empties (dask's, with or without tlcore)
        if basic and pixels[key].shape == want.shape:
            assert np.array_equal(got, pixels[key]), key
        if want.size and basic:  # tlcore.compute's reads: one region, or one per run of
            planned = find_region(value)  # storage chunks where whole chunks lie between
            assert planned is not None and regions == len(planned.regions), key


@pytest.mark.parametrize(
    "key",
    [
        (0, 0, slice(3, 3)),  # empty
        (Ellipsis, slice(5, 2)),  # empty, backwards
        (1, slice(None), 4, slice(None, None, -1), -1),
        (-1, -2, -3, -4, -5),  # one pixel, 0-d
        (0, None, 1, slice(2, 4)),  # a new axis: dask computes it
    ],
)
def test_edge_indexes(strips: tuple[Any, np.ndarray], key: Any) -> None:
    data, pixels = strips
    got = data[key].compute()
    want = pixels[key]
    assert np.asarray(got).shape == want.shape and np.array_equal(got, want)
    assert np.asarray(got).dtype == want.dtype


@pytest.mark.parametrize(
    "build",
    [
        lambda x: x[0, 1, 2:9].map_blocks(lambda b: b // 2),
        lambda x: x[0, 1, 2:9, 3:30].rechunk((7, 13, 11)),
        lambda x: x[1, :, 1:4, 5:9].astype("float32") * 2 + 1,
        lambda x: da.stack([x[0, 0, 2:5, 1:20], x[1, 2, 6:9, 10:29]]),
        lambda x: da.concatenate([x[0, :, 1:3], x[1, :, 5:7]], axis=1),
        lambda x: x[0, 0].sum(axis=0),
        lambda x: x[1, 1, 2:5].blocks[1, 2],
        lambda x: x,
    ],
)
def test_other_dask_operations_keep_their_values(
    strips: tuple[Any, np.ndarray], build: Callable[[Any], Any]
) -> None:
    data, pixels = strips
    value = build(data)
    want = build(da.from_array(pixels, chunks=CHUNKS)).compute(scheduler="synchronous")
    for scheduler in ("threads", "synchronous"):
        got = value.compute(scheduler=scheduler)
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_persist_and_two_crops_at_once(strips: tuple[Any, np.ndarray]) -> None:
    data, pixels = strips
    a, b = data[0, 0, 1:7, 2:30], data[1, 2, 4:10, 9:17, 20:]
    (kept,), regions, _ = _reads(lambda: dask.persist(a))
    assert regions == 1 and kept.chunks == a.chunks
    assert np.array_equal(kept.compute(), pixels[0, 0, 1:7, 2:30])
    (ga, gb), regions, _ = _reads(lambda: dask.compute(a, b))
    assert regions == 2
    assert np.array_equal(ga, pixels[0, 0, 1:7, 2:30])
    assert np.array_equal(gb, pixels[1, 2, 4:10, 9:17, 20:])


def test_graphs_pickle_before_and_after_optimisation(strips: tuple[Any, np.ndarray]) -> None:
    data, pixels = strips
    crop = data[1, 0, 3:10, 6:33, 2:35]
    again = pickle.loads(pickle.dumps(crop))
    assert np.array_equal(again.compute(), pixels[1, 0, 3:10, 6:33, 2:35])
    (optimised,) = dask.optimize(crop)
    tasks = pickle.loads(pickle.dumps(dict(optimised.__dask_graph__())))
    reads = [t for t in tasks.values() if isinstance(t, tuple) and isinstance(t[0], ReadRegion)]
    assert len(reads) == 1
    assert np.array_equal(optimised.compute(), pixels[1, 0, 3:10, 6:33, 2:35])


def test_tlcores_compute_keeps_its_fast_path(strips: tuple[Any, np.ndarray]) -> None:
    data, pixels = strips
    crop = data[0, 2, 1:11, 2:39, 5:9]
    assert find_region(crop) is not None
    got, regions, _ = _reads(lambda: compute(crop))
    assert regions == 1 and np.array_equal(got, pixels[0, 2, 1:11, 2:39, 5:9])


def test_switches_give_dasks_chunk_by_chunk_reads(
    strips: tuple[Any, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, pixels = strips
    crop = data[1, 2, 2:11, 5:37, 3:30]  # 80 chunks
    want = pixels[1, 2, 2:11, 5:37, 3:30]
    monkeypatch.setenv("TLCORE_DIRECT_READ", "0")
    got, regions, _ = _reads(crop.compute)
    assert regions == 80 and np.array_equal(got, want)
    monkeypatch.delenv("TLCORE_DIRECT_READ")
    monkeypatch.setattr(daskarray, "FUSE_MAX_BYTES", want.nbytes - 1)
    got, regions, _ = _reads(crop.compute)
    assert regions == 80 and np.array_equal(got, want)
    monkeypatch.undo()
    with dask.config.set(array_optimize=False):  # the user's setting wins
        got, regions, _ = _reads(crop.compute)
    assert regions == 80 and np.array_equal(got, want)
    assert dask.config.get("array_optimize") is daskarray.optimize


def test_store_and_to_delayed(strips: tuple[Any, np.ndarray]) -> None:
    data, pixels = strips
    crop = data[0, 1, 2:10, 3:31, 5:25]
    target = np.zeros(crop.shape, crop.dtype)
    da.store(crop, target)
    assert np.array_equal(target, pixels[0, 1, 2:10, 3:31, 5:25])
    blocks = crop.to_delayed()
    assert np.array_equal(blocks[1, 2, 0].compute(), crop.blocks[1, 2, 0].compute())


def test_graphs_without_a_reader_are_left_to_dask() -> None:
    x = da.arange(1000, chunks=100)[3:250]
    assert daskarray.fused_graph(x.__dask_graph__(), x.__dask_keys__()) is None
    assert daskarray.optimize(x.__dask_graph__(), x.__dask_keys__())  # dask's own
    assert np.array_equal(x.compute(), np.arange(1000)[3:250])


def test_a_samples_view_computes_a_crop_in_one_read(strips: tuple[Any, np.ndarray]) -> None:
    """What LoadLazyd builds (a ReaderView's dask array, several timepoints folded into C, cast
    to float32): a plain compute of a crop of it is tlcore.compute's reads too (here two: the
    unselected channel between channels 0 and 2 is whole stored planes, not read)."""
    data, pixels = strips
    reader = reader_of(data)
    assert reader is not None
    view = ReaderView(reader, [0, 1], [0, 2], dtype="float32").to_dask()
    crop = view[:, 2:9, 5:30, 4:33]
    got, regions, _ = _reads(crop.compute)
    want = pixels[:, [0, 2], 2:9, 5:30, 4:33].reshape(4, 7, 25, 29).astype("float32")
    assert got.dtype == np.float32 and np.array_equal(got, want)
    planned = find_region(crop)
    assert planned is not None and regions == len(planned.regions) == 2
    assert crop.npartitions > 2  # dask alone: one read per chunk
