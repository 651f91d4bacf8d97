"""tlcore.lazy.regions: selections become the fewest contiguous reads with numpy's pixels, and one
sample's ReaderView (what LoadLazyd builds) is read as one region per crop, several
timepoints included, whatever the chunk count of the image."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tlcore
from tlcore.lazy import read_stats
from tlcore.lazy.compute import compute, find_region
from tlcore.lazy.regions import ReaderView, plan
from tlcore.training.collate import Batch, collate_samples

from ..support.readers import NumpyArrayReader

DATA = np.arange(5 * 4 * 6 * 20 * 24, dtype=np.uint16).reshape(5, 4, 6, 20, 24)
CHUNKS = (1, 1, 3, 8, 8)


@pytest.fixture
def reader() -> NumpyArrayReader:
    return NumpyArrayReader("regions-test", DATA, CHUNKS)


def _outer(data: np.ndarray, axes: list[Any]) -> np.ndarray:
    """numpy's result of per-axis (outer) selections, one axis at a time."""
    out = data
    axis = 0
    for sel in axes:
        if isinstance(sel, int):
            out = np.take(out, sel, axis=axis)
            continue
        out = np.take(out, np.asarray(list(sel) if isinstance(sel, range) else sel), axis=axis)
        axis += 1
    return out


SELECTIONS: list[tuple[list[Any], int]] = [
    ([0, range(4), range(6), range(20), range(24)], 1),
    ([2, range(1, 3), range(2, 5), range(3, 17), range(5, 21)], 1),
    ([4, 3, 0, range(19, 1, -3), range(0, 24, 5)], 1),  # steps, reversed
    ([range(1, 4), [0, 3], range(6), 7, range(24)], 2),  # channel 1-2 chunks skipped
    ([np.array([4, 0, 4]), range(4), 5, range(0, 8), 9], 2),  # T 1-3 skipped: two runs
    ([np.array([3, 1]), np.array([2, 0, 2]), range(1, 2), range(4), range(2)], 4),  # 2 x 2 runs
]


@pytest.mark.parametrize(("axes", "reads"), SELECTIONS)
def test_plan_gives_numpys_pixels_with_the_fewest_reads(
    reader: NumpyArrayReader, axes: list[Any], reads: int
) -> None:
    region = plan(reader, axes)
    read_stats.reset()
    got = region.read()
    assert read_stats.snapshot()[0] == len(region.regions) == reads
    want = _outer(DATA, axes)
    assert got.shape == want.shape and np.array_equal(got, want)


def test_plan_refuses_positions_outside_the_array(reader: NumpyArrayReader) -> None:
    with pytest.raises(IndexError):
        plan(reader, [5, range(4), range(6), range(20), range(24)])
    with pytest.raises(IndexError):
        plan(reader, [0, np.array([0, 4]), range(6), range(20), range(24)])


def _view_reference(ts: Any, cs: list[int] | None, drop_z: bool = False) -> np.ndarray:
    cs = list(range(DATA.shape[1])) if cs is None else cs
    out = DATA[ts][cs] if isinstance(ts, int) else np.concatenate([DATA[t][cs] for t in ts])
    return out[:, 0] if drop_z else out


VIEWS: list[tuple[Any, list[int] | None]] = [
    (3, None),
    (1, [2]),
    (0, [3, 1]),
    ([0, 1, 2], None),  # sequential timepoints: one region
    ([4, 0], [1, 2]),  # random draws are sorted by the sampler, but any order reads right
    ([2], [0, 3]),
]


@pytest.mark.parametrize(("ts", "cs"), VIEWS)
def test_view_and_its_crops_read_the_samples_pixels(
    reader: NumpyArrayReader, ts: Any, cs: list[int] | None
) -> None:
    view = ReaderView(reader, ts, cs)
    want = _view_reference(ts, cs)
    assert view.shape == want.shape and view[...].shape == want.shape
    assert np.array_equal(view[...], want)
    lazy = view.to_dask()
    assert np.array_equal(lazy.compute(scheduler="synchronous"), want)  # the dask fallback
    crop = lazy[:, 1:5, 3:17, 2:21]
    region = find_region(crop)
    assert region is not None
    read_stats.reset()
    assert np.array_equal(compute(crop), want[:, 1:5, 3:17, 2:21])
    runs = 1 if isinstance(ts, int) else 1 + int(np.sum(np.diff(sorted(ts)) > 1))
    if cs is not None and len(cs) > 1 and np.any(np.abs(np.diff(sorted(cs))) > 1):
        runs *= 2  # whole channel chunks are skipped between them
    assert read_stats.snapshot()[0] == len(region.regions) == runs


def test_view_drops_z_and_casts(reader: NumpyArrayReader) -> None:
    flat = NumpyArrayReader("flat", DATA[:, :, :1], (1, 1, 1, 8, 8))
    view = ReaderView(flat, [1, 2], [0, 2], drop_z=True, dtype="float32")
    want = _view_reference([1, 2], [0, 2])[:, 0].astype("float32")
    assert view.shape == want.shape == (4, 20, 24)
    lazy = view.to_dask()
    assert lazy.dtype == np.float32
    crop = lazy[:, 3:9, 4:10]
    assert np.array_equal(compute(crop), want[:, 3:9, 4:10])
    with pytest.raises(ValueError, match="drop Z"):
        ReaderView(reader, 0, drop_z=True)


def test_view_chunks_follow_the_storage(reader: NumpyArrayReader) -> None:
    view = ReaderView(reader, [1, 3], [0, 1, 3])
    assert view.chunks == ((1, 1, 1) * 2, (3, 3), (8, 8, 4), (8, 8, 8))
    two_channel_chunks = NumpyArrayReader("cc", DATA, (1, 2, 3, 8, 8))
    assert ReaderView(two_channel_chunks, 0, [0, 1, 2]).chunks[0] == (2, 1)


def test_a_folded_selection_that_is_not_a_product_falls_back_to_dask(
    reader: NumpyArrayReader,
) -> None:
    lazy = ReaderView(reader, [0, 2], [0, 1, 2]).to_dask()
    odd = lazy[1:5]  # t0c1, t0c2, t2c0, t2c1: not time x channel
    assert find_region(odd) is None
    want = _view_reference([0, 2], [0, 1, 2])[1:5]
    assert np.array_equal(compute(odd), want)


def test_view_pickles_without_its_handle(reader: NumpyArrayReader) -> None:
    view = ReaderView(reader, [0, 1], [1])
    _ = view[0]  # opens the handle
    copy = pickle.loads(pickle.dumps(view))
    assert copy.reader._handle is None
    assert np.array_equal(copy[...], view[...])


# -- through LoadLazyd ----------------------------------------------------------------------------
@pytest.mark.parametrize("timepoints", [1, [0, 1, 2], [0, 3]])
def test_loaded_crops_are_one_read_per_run_of_timepoints(
    synthetic_store: Callable[..., Path], timepoints: Any
) -> None:
    from tlcore import ComputeDaskd, LoadLazyd, RandLazyCropd

    store = synthetic_store(shape=(4, 3, 8, 64, 64), chunks=(1, 1, 4, 32, 32))
    sample = LoadLazyd(keys="raw")({"original_path": str(store), "T": timepoints, "C": "0,1"})
    sample = RandLazyCropd(keys="raw", roi_size=(4, 20, 20))(sample)
    assert sample["raw"].region() is not None  # known without replaying the graph
    read_stats.reset()
    out = ComputeDaskd(keys="raw")(sample)
    ts = timepoints if isinstance(timepoints, list) else [timepoints]
    runs = 1 + int(np.sum(np.diff(ts) > 1))
    assert read_stats.snapshot()[0] == runs
    z, y, x = out["raw_meta"]["crop_start"]
    raw = tlcore.open_lazy(store).data
    want = np.concatenate(
        [raw[t, 0:2, z : z + 4, y : y + 20, x : x + 20].compute() for t in ts]
    ).astype(np.int32)
    assert np.array_equal(out["raw"].numpy(), want)


def test_per_crop_graph_does_not_grow_with_the_chunk_count() -> None:
    """A 30-million-chunk image: the sample's graph holds only the crop's blocks."""
    from dask.blockwise import Blockwise

    from tlcore.lazy.array import track

    big = NumpyArrayReader("big", np.zeros((1, 1, 1, 1, 1), np.uint8), (1, 1, 1, 1, 1))
    big.shape = (3000, 2, 50, 1000, 1000)  # metadata only: the read below stays in bounds
    big.chunks = (1, 1, 1, 10, 10)
    view = ReaderView(big, [0, 1], [0])
    sample = track(view.to_dask(), view=view)
    crop = sample[:, 0:1, 0:1, 0:1]
    tasks = sum(
        len(layer) for layer in crop.dask.layers.values() if not isinstance(layer, Blockwise)
    )
    assert tasks <= 2  # one block per folded timepoint
    region = crop.region()
    assert region is not None and len(region.regions) == 1


# -- batches from workers ----------------------------------------------------------------------
def test_batches_pickle_small_tensors_inline_and_images_through_shared_memory() -> None:
    image = torch.zeros(2, 1, 4, 64, 64)
    batch = collate_samples([
        {"raw": image[0], "T": 3, "row": 0, "name": "a"},
        {"raw": image[1], "T": 5, "row": 1, "name": "b"},
    ])  # fmt: skip
    assert isinstance(batch, Batch) and isinstance(batch, dict)
    _, (items,) = batch.__reduce__()
    assert type(items["T"]).__name__ == "_InlineTensor"  # by value, in the pickle
    assert type(items["row"]).__name__ == "_InlineTensor"
    assert items["raw"] is batch["raw"]  # 128 KiB: through torch's shared memory
    copy = pickle.loads(pickle.dumps(batch))
    assert isinstance(copy, Batch)
    assert copy["T"].dtype == torch.int64 and copy["T"].tolist() == [3, 5]
    assert torch.equal(copy["raw"], batch["raw"]) and copy["name"] == ["a", "b"]


def test_batches_from_two_workers_keep_their_types(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=(4, 1, 4, 32, 32), chunks=(1, 1, 4, 16, 16))
    dm = tlcore.RandomTimelapseDatamodule(
        {"dict_meta": {"path": [str(store)] * 4}},
        split_column=None,
        patch_shape=(4, 16, 16),
        batch_size=2,
        num_workers=2,
        samples_per_epoch=4,
        validate=False,
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    for batch in batches:
        assert isinstance(batch, dict)
        assert batch["T"].dtype == torch.int64 and batch["T"].shape == (2,)
        assert batch["row"].shape == (2,) and batch["raw"].shape == (2, 1, 4, 16, 16)


def test_meta_tensors_in_batches_keep_their_metadata_across_the_pickle() -> None:
    from monai.data import MetaTensor

    image = MetaTensor(torch.arange(2 * 8 * 8).reshape(2, 1, 8, 8), meta={"crop": (1, 2)})
    image.is_batch = True
    batch = Batch({"raw": image, "T": torch.tensor([1, 2])})
    _, (items,) = batch.__reduce__()
    assert type(items["raw"]).__name__ == "_InlineMetaTensor"
    assert type(items["raw"].meta["affine"]).__name__ == "_InlineTensor"
    copy = pickle.loads(pickle.dumps(batch))
    assert isinstance(copy["raw"], MetaTensor) and copy["raw"].is_batch
    assert torch.equal(copy["raw"].as_tensor(), image.as_tensor())
    assert copy["raw"].meta["crop"] == (1, 2)
    assert torch.equal(copy["raw"].affine, image.affine)
