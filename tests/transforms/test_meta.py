"""The guide's patterns with tlcore names, ComputeDaskd's metadata (the crop box whichever crop
chose it), dtype handling, chunk-aligned crops, the decoded-chunk cache, read amplification as
counted, and foreground-weighted crops. Chunk reads are counted with audit hooks."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from monai.data import MetaTensor
from monai.transforms import Compose, RandFlipd, RandSpatialCropd

from tlcore import chunkcache, foreground
from tlcore.transforms import (
    BioIOImageLoaderd,
    ComputeDaskd,
    Foreground,
    LoadImaged,
    LoadLazyd,
    OmeZarrReader,
    RandLazyCropd,
)

SHAPE = (5, 2, 8, 96, 128)  # T, C, Z, Y, X
CHUNKS = (1, 1, 4, 32, 32)


@pytest.fixture
def store(synthetic_store: Callable[..., Path]) -> Path:
    return synthetic_store(shape=SHAPE, chunks=CHUNKS, n_levels=2)


def level(store: Path, n: int = 0) -> np.ndarray:
    return np.asarray(zarr.open_array(str(store), path=str(n), mode="r")[...])


def chunk_files(store: Path, t: int, start: tuple[int, ...], size: tuple[int, ...],
                channels: range) -> set[str]:  # fmt: skip
    ranges = [range(s // k, (s + n - 1) // k + 1) for s, n, k in zip(start, size, CHUNKS[2:])]
    return {
        os.path.join(str(store), "0", "c", str(t), str(c), *(str(i) for i in idx))
        for c in channels
        for idx in itertools.product(*ranges)
    }


def test_guide_pattern_reads_only_the_crop_and_records_monais_box(store: Path, file_opens) -> None:  # type: ignore[no-untyped-def]
    load = BioIOImageLoaderd(path_key="original_path", out_key="raw", dask_load=True,
                             lazy_load=True, dtype="float16")  # fmt: skip
    crop = RandSpatialCropd(keys=["raw"], roi_size=[4, 40, 40], random_size=False)
    compute = ComputeDaskd(keys=["raw"], dtype="float16")
    flip = RandFlipd(keys=["raw"], prob=0.0)
    Compose([load, crop, compute, flip])  # the guards look for the loader in a pipeline
    sample: dict[Hashable, Any] = {"original_path": str(store), "T": 3, "C": 0}  # by hand
    file_opens.watch(store)
    loaded = load(sample)
    assert file_opens.chunk_files() == set()  # load: metadata only
    assert loaded["raw"].shape == (1, 8, 96, 128)  # channel-first, no EnsureChannelFirstd
    crop.set_random_state(seed=5)
    cropped = crop(loaded)
    assert file_opens.chunk_files() == set()  # crop: still nothing read
    out = flip(compute(cropped))
    opened = file_opens.chunk_files()
    file_opens.stop()
    tensor, meta = out["raw"], out["raw_meta"]
    assert isinstance(tensor, MetaTensor) and tensor.dtype == torch.float16
    z, y, x = meta["crop_start"]
    assert meta["crop_size"] == (4, 40, 40) and tensor.meta["crop_start"] == (z, y, x)
    want = level(store)[3, 0:1, z : z + 4, y : y + 40, x : x + 40].astype(np.float16)
    assert np.array_equal(tensor.numpy(), want)
    assert opened == chunk_files(store, 3, (z, y, x), (4, 40, 40), range(1))
    assert tensor.meta["filename_or_obj"] == str(store) and tensor.meta["timepoints"] == 3
    assert tensor.meta["pixel_sizes"] == meta["pixel_sizes"]
    assert meta["crop_start_level0"] == (z, y, x)


def test_box_of_folded_timepoints_and_of_a_crop_of_a_crop(store: Path) -> None:
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandLazyCropd(keys="raw", roi_size=(6, 64, 64)),
        RandSpatialCropd(keys="raw", roi_size=(3, 20, 30), random_size=False),
        ComputeDaskd(keys="raw"),
    ])  # fmt: skip
    pipeline.set_random_state(seed=11)
    out = pipeline({"original_path": str(store), "T": [1, 4]})
    z, y, x = out["raw_meta"]["crop_start"]
    full = level(store)
    want = np.concatenate([full[t, :, z : z + 3, y : y + 20, x : x + 30] for t in (1, 4)])
    assert out["raw"].dtype == torch.int32  # uint16 widened losslessly
    assert np.array_equal(out["raw"].numpy(), want)
    assert out["raw_meta"]["n_timepoints"] == 2 and out["raw_meta"]["n_channels"] == 2


def test_eager_box_is_recovered_from_monais_record(store: Path) -> None:
    pipeline = Compose([
        BioIOImageLoaderd(lazy_load=False, dtype="float32"),
        RandSpatialCropd(keys="raw", roi_size=(2, 16, 24), random_size=False),
        ComputeDaskd(keys="raw"),
    ])  # fmt: skip
    pipeline.set_random_state(seed=2)
    out = pipeline({"original_path": str(store), "T": 0})
    z, y, x = out["raw_meta"]["crop_start"]
    want = level(store)[0, :, z : z + 2, y : y + 16, x : x + 24].astype(np.float32)
    assert np.array_equal(out["raw"].numpy(), want)


def test_unknown_box_is_none_not_a_guess(store: Path) -> None:
    sample = LoadLazyd(keys="raw", timepoint=0)({"original_path": str(store)})
    sample["raw"] = (sample["raw"] + 1)[:, :2, :8, :8]  # arithmetic: no longer tracked
    out = ComputeDaskd(keys="raw")(sample)
    assert out["raw_meta"]["crop_start"] is None and out["raw_meta"]["crop_size"] == (2, 8, 8)


@pytest.mark.parametrize("dtype", ["float16", np.float16, torch.float16, "torch.float16"])
def test_compute_dtypes(store: Path, dtype: object) -> None:
    sample = LoadLazyd(keys="raw", timepoint=0)({"original_path": str(store), "note": "x"})
    sample["raw"] = sample["raw"][:, :2, :8, :8]
    out = ComputeDaskd(keys=["raw", "note"], dtype=dtype)(sample)
    assert out["raw"].dtype == torch.float16 and out["note"] == "x"  # non-arrays pass through


def test_load_imaged_with_ome_zarr_reader_at_level_1(store: Path) -> None:
    pipeline = Compose([
        LoadImaged(keys=["raw"], reader=OmeZarrReader(level=1, lazy_load=True)),
        RandSpatialCropd(keys=["raw"], roi_size=[4, 16, 16], random_size=False),
        ComputeDaskd(keys=["raw"], dtype="float32"),
    ])  # fmt: skip
    pipeline.set_random_state(seed=1)
    out = pipeline({"raw": str(store), "T": 2})
    meta = out["raw_meta"]
    z, y, x = meta["crop_start"]
    want = level(store, 1)[2, :, z : z + 4, y : y + 16, x : x + 16].astype(np.float32)
    assert meta["level"] == 1 and np.array_equal(out["raw"].numpy(), want)
    assert meta["crop_start_level0"] == (z, 2 * y, 2 * x)
    assert meta["crop_size_level0"] == (4, 32, 32)


def test_guide_yaml_instantiates_with_tlcore_names(store: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create("""
transform:
  - {_target_: tlcore.BioIOImageLoaderd, path_key: original_path, out_key: raw,
     dask_load: true, lazy_load: true, dtype: float16}
  - {_target_: monai.transforms.RandSpatialCropd, keys: [raw], roi_size: [4, 32, 32],
     random_size: false}
  - {_target_: tlcore.ComputeDaskd, keys: [raw], dtype: float16}
  - {_target_: monai.transforms.RandFlipd, keys: [raw], prob: 0.5}
""")
    pipeline = Compose(list(instantiate(cfg.transform)))
    out = pipeline({"original_path": str(store), "T": 1})
    assert out["raw"].shape == (2, 4, 32, 32) and out["raw"].dtype == torch.float16


def test_aligned_crops_decode_fewer_chunks_counted(store: Path) -> None:
    def amplification(align: bool) -> tuple[float, int]:
        pipeline = Compose([
            LoadLazyd(keys="raw", chunk_cache=0),  # 0: count decoded chunks, cache nothing
            RandLazyCropd(keys="raw", roi_size=(4, 32, 32), align_to_chunks=align),
            ComputeDaskd(keys="raw"),
        ])  # fmt: skip
        pipeline.set_random_state(seed=4)
        chunkcache.stats.reset()
        for t in range(SHAPE[0]):
            out = pipeline({"original_path": str(store), "T": t})
            if align:
                assert all(s % k == 0 for s, k in zip(out["raw_meta"]["crop_start"], CHUNKS[2:]))
        snap = chunkcache.stats.snapshot()
        return snap["amplification"], int(snap["chunks_decoded"])

    aligned, n_aligned = amplification(True)
    unaligned, n_unaligned = amplification(False)
    assert aligned == pytest.approx(1.0)  # the crop is exactly one chunk per channel
    assert n_aligned == SHAPE[0] * 2
    assert unaligned > 1.5 and n_unaligned > n_aligned


def test_chunk_cache_decodes_a_shared_chunk_once(store: Path, file_opens) -> None:  # type: ignore[no-untyped-def]
    pipeline = Compose([
        LoadLazyd(keys="raw", chunk_cache=64 * 2**20),
        RandLazyCropd(keys="raw", roi_size=(8, 48, 48)),
        ComputeDaskd(keys="raw"),
    ])  # fmt: skip
    pipeline.set_random_state(seed=9)
    chunkcache.cache.clear()
    chunkcache.stats.reset()
    full = level(store)
    file_opens.watch(store)
    for _ in range(6):  # six crops of one timepoint
        out = pipeline({"original_path": str(store), "T": 2})
        z, y, x = out["raw_meta"]["crop_start"]
        assert np.array_equal(out["raw"].numpy(), full[2, :, z : z + 8, y : y + 48, x : x + 48])
    snap = chunkcache.stats.snapshot()
    assert snap["cache_hits"] > 0
    # Each chunk file was opened (decoded) at most once.
    opened = [p for p in file_opens.paths if p in file_opens.chunk_files()]
    assert len(opened) == len(set(opened)) == snap["chunks_decoded"]
    assert chunkcache.cache.nbytes <= chunkcache.cache.max_bytes


def test_foreground_crops_land_on_the_sample(  # type: ignore[no-untyped-def]
    synthetic_store: Callable[..., Path], file_opens
) -> None:
    path = synthetic_store(shape=(2, 1, 4, 128, 128), chunks=(1, 1, 4, 32, 32), n_levels=3)
    root = zarr.open_group(str(path), mode="r+")
    for name in ("0", "1", "2"):  # a dark image with one bright square, top-left, all levels
        f = 2 ** int(name)
        a = root[name]
        assert isinstance(a, zarr.Array)
        a[...] = 0
        a[:, :, :, 8 // f : 40 // f, 8 // f : 40 // f] = 1000
    foreground.clear()
    fg = Foreground(threshold=500, min_size=32, floor=0.0)
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandLazyCropd(keys="raw", roi_size=(4, 16, 16), foreground=fg),
        ComputeDaskd(keys="raw"),
    ])  # fmt: skip
    pipeline.set_random_state(seed=0)
    file_opens.watch(path)
    hits = 0
    for _ in range(30):
        out = pipeline({"original_path": str(path), "T": 1})
        hits += int(out["raw"].max() > 0)
    assert hits == 30  # uniform crops would touch the square about 15% of the time
    # The map came from level 2 (32 x 32), read once; level 0 only for the crops.
    level2 = {p for p in file_opens.chunk_files() if f"{os.sep}2{os.sep}c{os.sep}" in p}
    assert len(level2) == 1 and len(foreground._maps) == 1
