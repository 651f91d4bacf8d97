"""The lazy path from a file to a cropped tensor: loader -> crop -> ComputeDaskd.

Chunk reads are counted with Python's audit hooks (the files the process really opens), so
"reads only what it touches" is measured, not assumed.
"""

from __future__ import annotations

import itertools
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from monai.transforms import Compose, RandSpatialCropd

import tlcore
from tlcore.lazy import ArrayReader
from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

SHAPE = (6, 2, 8, 96, 128)  # T, C, Z, Y, X
CHUNKS = (1, 1, 4, 32, 32)


@pytest.fixture
def store(synthetic_store: Callable[..., Path]) -> Path:
    return synthetic_store(shape=SHAPE, chunks=CHUNKS, interval_s=5.0)


def chunk_files(
    store: Path, t: int, start: tuple[int, ...], size: tuple[int, ...], channels: range
) -> set[str]:
    """The chunk files a (C)ZYX box of timepoint t must read, zarr v3 key encoding."""
    ranges = [range(s // k, (s + n - 1) // k + 1) for s, n, k in zip(start, size, CHUNKS[2:])]
    return {
        os.path.join(str(store), "0", "c", str(t), str(c), *(str(i) for i in idx))
        for c in channels
        for idx in itertools.product(*ranges)
    }


def direct(store: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(store), path="0", mode="r")[...])


def test_open_reads_no_chunk(store: Path, file_opens) -> None:  # type: ignore[no-untyped-def]
    file_opens.watch(store)
    image = tlcore.open_lazy(store)
    image.data[3, :, 2:5, 10:20, 10:20]  # slicing is lazy too
    assert file_opens.chunk_files() == set()
    assert file_opens.paths, "opening should have read the metadata documents"


def test_monai_crop_reads_only_touched_chunks(store: Path, file_opens) -> None:  # type: ignore[no-untyped-def]
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandSpatialCropd(keys="raw", roi_size=(3, 40, 40), random_size=False),
    ])  # fmt: skip
    pipeline.set_random_state(seed=7)
    sample = pipeline({"original_path": str(store), "T": 4})
    lazy = sample["raw"]
    assert hasattr(lazy, "dask") and lazy.shape == (2, 3, 40, 40)
    file_opens.watch(store)
    out = ComputeDaskd(keys="raw")(sample)["raw"]
    opened = file_opens.chunk_files()

    # Recover the box MONAI chose by matching the crop against the full timepoint.
    full = direct(store)[4]
    matches = [
        (z, y, x)
        for z in range(SHAPE[2] - 3 + 1)
        for y in range(SHAPE[3] - 40 + 1)
        for x in range(SHAPE[4] - 40 + 1)
        if np.array_equal(full[:, z : z + 3, y : y + 40, x : x + 40], out.numpy())
    ]
    assert len(matches) == 1
    expected = chunk_files(store, 4, matches[0], (3, 40, 40), range(2))
    assert opened == expected
    total_chunks = int(np.prod([-(-n // k) for n, k in zip(SHAPE, CHUNKS)]))
    assert len(opened) < total_chunks / 20


def test_rand_lazy_crop_records_box_and_reads_only_it(store: Path, file_opens) -> None:  # type: ignore[no-untyped-def]
    crop = RandLazyCropd(keys=["raw"], roi_size=(4, 32, 48))
    pipeline = Compose(
        [LoadLazyd(keys="raw", channel_key="ch"), crop, ComputeDaskd(keys="raw", dtype="float32")]
    )
    pipeline.set_random_state(seed=3)
    file_opens.watch(store)
    sample = pipeline({"original_path": str(store), "T": 2, "ch": "1"})
    opened = file_opens.chunk_files()
    meta = sample["raw_meta"]
    z, y, x = meta["crop_start"]
    assert meta["crop_size"] == (4, 32, 48)
    assert meta["timepoints"] == 2 and meta["channels"] == [1]
    assert meta["time_s"] == pytest.approx(10.0)
    assert meta["reader"] == "ome-zarr" and meta["image_shape"] == SHAPE
    tensor = sample["raw"]
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    want = direct(store)[2, 1:2, z : z + 4, y : y + 32, x : x + 48].astype(np.float32)
    assert np.array_equal(tensor.numpy(), want)
    assert opened == chunk_files(store, 2, (z, y, x), (4, 32, 48), range(1, 2))


def test_crops_are_random_and_reproducible(store: Path) -> None:
    def boxes(seed: int) -> list[tuple[int, ...]]:
        crop = RandLazyCropd(keys="raw", roi_size=(2, 16, 16))
        pipeline = Compose([LoadLazyd(keys="raw", timepoint=0), crop])
        pipeline.set_random_state(seed=seed)  # Compose reseeds its members when built
        return [pipeline({"original_path": str(store)})["raw_meta"]["crop_start"] for _ in range(8)]

    assert boxes(1) == boxes(1)
    assert boxes(1) != boxes(2)
    assert len(set(boxes(1))) > 1


def test_loader_opens_a_file_once_per_process_and_pickles_small(store: Path) -> None:
    from tlcore import cache

    cache.clear()
    loader = LoadLazyd(keys="raw")
    images = {id(loader({"original_path": str(store), "T": t})["raw_meta"]) for t in range(3)}
    assert len(images) == 3  # three samples...
    assert len(cache._images) == 1  # ...one opened file
    blob = pickle.dumps(loader)
    assert len(blob) < 4096  # the loader carries settings, not images
    clone = pickle.loads(blob)
    assert clone({"original_path": str(store), "T": 1})["raw"].shape == SHAPE[1:]


def test_loader_options(store: Path, synthetic_store: Callable[..., Path]) -> None:
    loader = LoadLazyd(keys=["raw", "target"])
    out = loader({"original_path": str(store), "T": -1, "C": [1, 0]})
    assert out["raw"].shape == (2, *SHAPE[2:]) and out["target"] is out["raw"]
    assert out["raw_meta"]["channels"] == [1, 0] and out["raw_meta"]["timepoints"] == SHAPE[0] - 1
    flipped = np.asarray(out["raw"].compute())
    assert np.array_equal(flipped, direct(store)[-1][[1, 0]])
    named = loader({"original_path": str(store), "T": 0, "C": "ch1"})
    assert named["raw_meta"]["channels"] == [1]

    flat = synthetic_store("flat.ome.zarr", shape=(3, 20, 24), chunks=(1, 20, 24), axes="tyx")
    out2 = LoadLazyd(keys="raw", spatial_dims=2)({"original_path": str(flat), "T": 1})
    assert out2["raw"].shape == (1, 20, 24)


def test_loader_errors_name_the_file(store: Path) -> None:
    loader = LoadLazyd(keys="raw")
    with pytest.raises(ValueError, match=r"has 6 timepoints and the sample names none"):
        loader({"original_path": str(store)})
    with pytest.raises(IndexError, match=r"timepoint 6 out of range .*T=6"):
        loader({"original_path": str(store), "T": 6})
    with pytest.raises(IndexError, match=r"channel 5 out of range.*2 channel"):
        loader({"original_path": str(store), "T": 0, "C": "0,5"})
    with pytest.raises(KeyError, match=r"no channel 'GFP'"):
        loader({"original_path": str(store), "T": 0, "C": "GFP"})
    with pytest.raises(ValueError, match=r"spatial_dims=2 but .* has Z=8"):
        LoadLazyd(keys="raw", spatial_dims=2)({"original_path": str(store), "T": 0})
    with pytest.raises(KeyError, match="no 'original_path' key"):
        loader({"file": str(store)})
    loaded = LoadLazyd(keys="raw", timepoint=0)({"original_path": str(store)})
    with pytest.raises(ValueError, match=r"roi_size \(16, 16, 16\) is larger than .*synthetic"):
        RandLazyCropd(keys="raw", roi_size=(16, 16, 16))(loaded)


def test_compute_converts_dtypes(store: Path) -> None:
    sample = LoadLazyd(keys="raw", timepoint=0)({"original_path": str(store)})
    raw = ComputeDaskd(keys="raw")(sample)["raw"]
    assert raw.dtype == torch.int32  # uint16 widened losslessly
    half = ComputeDaskd(keys="raw", dtype=torch.float16)(sample)["raw"]
    assert half.dtype == torch.float16
    assert torch.equal(half.float(), raw.float().half().float())


def test_lazy_exports_from_tlcore() -> None:
    assert tlcore.ComputeDaskd is ComputeDaskd and tlcore.LoadLazyd is LoadLazyd
    with pytest.raises(AttributeError):
        tlcore.NotAThing  # noqa: B018


class _PidReader(ArrayReader):
    """Its handle records the process that opened it."""

    def __init__(self) -> None:
        super().__init__((1, 1, 1, 2, 2), "int64", (1, 1, 1, 2, 2))

    def identity(self) -> tuple[str]:
        return ("pid-reader",)

    def _open(self) -> dict[str, int]:
        return {"pid": os.getpid()}

    def _read(self, handle: dict[str, int], region: Any) -> np.ndarray:
        shape = tuple(s.stop - s.start for s in region)
        return np.full(shape, handle["pid"], dtype=np.int64)


def test_a_forked_child_reopens_instead_of_sharing_the_handle() -> None:
    reader = _PidReader()
    assert int(reader[0, 0, 0, 0, 0]) == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        ok = int(reader[0, 0, 0, 0, 0]) == os.getpid() and reader.handle["pid"] == os.getpid()
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"1"
    assert reader.handle["pid"] == os.getpid()  # the parent keeps its own
