"""The dataset and datamodule: one entry per row, draws that are pure functions of
(seed, epoch, position), the batch layout, resuming and distributed shares."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import tlcore
from tlcore.sampling.manifest import ManifestRow, read_manifest
from tlcore.training.dataset import SampleError, TimelapseDataset

SHAPE = (12, 2, 4, 40, 48)  # T, C, Z, Y, X
INTERVAL = 1.5


@pytest.fixture
def stores(synthetic_store: Callable[..., Path]) -> list[Path]:
    return [
        synthetic_store(f"s{i}.ome.zarr", shape=SHAPE, chunks=(1, 1, 2, 16, 16),
                        interval_s=INTERVAL, seed=i)
        for i in range(3)
    ]  # fmt: skip


def _frame(stores: list[Path], **columns: list[Any]) -> pd.DataFrame:
    data: dict[str, list[Any]] = {
        "path": [str(s) for s in stores],
        "split": ["train"] * (len(stores) - 1) + ["val"],
    }
    data.update(columns)
    return pd.DataFrame(data)


def _module(frame: pd.DataFrame, **kwargs: Any) -> tlcore.RandomTimelapseDatamodule:
    kwargs.setdefault("patch_shape", (2, 16, 16))
    kwargs.setdefault("batch_size", 2)
    dm = tlcore.RandomTimelapseDatamodule(frame, **kwargs)
    dm.setup("fit")
    return dm


def _epoch(loader: Any) -> list[dict[str, Any]]:
    return [dict(batch) for batch in loader]


def test_building_over_10000_rows_opens_no_file(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"path": [str(tmp_path / f"missing-{i}.nd2") for i in range(10_000)], "split": "train"}
    )
    dm = tlcore.RandomTimelapseDatamodule(frame, num_timepoints=4, validate=False)
    dm.setup("fit")
    dataset = dm.dataset("train")
    assert len(dataset) == 10_000  # built without touching a single (missing) file
    with pytest.raises(SampleError, match=r"DataFrame row \d+ .*missing-\d+\.nd2"):
        dataset[0]


def test_batches_are_identical_with_0_and_2_workers(stores: list[Path]) -> None:
    frame = _frame(stores, channel=["0", "1", "0"])
    kwargs = dict(num_timepoints=2, samples_per_epoch={"train": 8}, seed=3)
    single = _epoch(_module(frame, **kwargs).train_dataloader())
    workers = _epoch(_module(frame, num_workers=2, **kwargs).train_dataloader())
    assert len(single) == len(workers) == 4
    for a, b in zip(single, workers):
        assert torch.equal(a["T"], b["T"]) and torch.equal(a["row"], b["row"])
        assert torch.equal(a["raw"], b["raw"])
        assert [m["crop_start"] for m in a["raw_meta"]] == [m["crop_start"] for m in b["raw_meta"]]
    # The two workers made alternate batches; had they shared one random state (the cyto_dl
    # fault), their batches would repeat each other's draws.
    draws = [tuple(map(tuple, b["T"].tolist())) for b in workers]
    assert draws[0] != draws[1] and draws[2] != draws[3]


def test_each_epoch_draws_anew_and_validation_repeats(stores: list[Path]) -> None:
    dm = _module(_frame(stores), samples_per_epoch={"train": 6, "val": 4})
    loader = dm.train_dataloader()
    first = torch.cat([b["T"] for b in loader])
    second = torch.cat([b["T"] for b in loader])  # the sampler moved to epoch 1 by itself
    assert not torch.equal(first, second)
    loader.sampler.set_epoch(0)  # type: ignore[attr-defined]
    assert torch.equal(torch.cat([b["T"] for b in loader]), first)
    val = dm.val_dataloader()
    assert torch.equal(torch.cat([b["T"] for b in val]), torch.cat([b["T"] for b in val]))


def test_several_timepoints_share_one_box_and_keep_a_time_axis(stores: list[Path]) -> None:
    dm = _module(
        _frame(stores, channel=["1", "0", "1"]),  # one channel each: one model input
        num_timepoints=3,
        timepoint_sampling="sequential",
        split_column=None,
        batch_size=1,
    )
    for batch in dm.train_dataloader():
        raw, meta = batch["raw"], batch["raw_meta"][0]
        n_c = len(meta["channels"])
        assert raw.shape == (1, 3, n_c, 2, 16, 16)  # B, T, C, Z, Y, X
        ts = batch["T"][0].tolist()
        assert ts == list(range(ts[0], ts[0] + 3)) and meta["timepoints"] == ts
        assert batch["T_seconds"][0].tolist() == pytest.approx([t * INTERVAL for t in ts])
        image = tlcore.open_lazy(batch["original_path"][0])
        z, y, x = meta["crop_start"]
        for k, t in enumerate(ts):  # one box for every timepoint, pixels from the right frame
            want = image.data[t, meta["channels"], z : z + 2, y : y + 16, x : x + 16].compute()
            assert np.array_equal(raw[0, k].numpy(), want.astype(np.float32))


def test_fold_time_and_independent_crops(stores: list[Path]) -> None:
    dm = _module(
        _frame(stores), num_timepoints=4, fold_time=True, independent_crops=True, batch_size=2
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["raw"].shape == (2 * 4, 2, 2, 16, 16)  # B*T, C, Z, Y, X
    boxes = [m["crop_start"] for m in batch["raw_meta"][0]["per_timepoint"]]
    assert len(boxes) == 4 and len(set(boxes)) > 1  # each timepoint cropped on its own


def test_rows_of_one_file_keep_their_own_ranges(stores: list[Path]) -> None:
    one = str(stores[0])
    rows = read_manifest(
        pd.DataFrame({"path": [one, one], "split": "train", "start": [0, 8], "stop": [3, -1]})
    )["train"]
    dataset = TimelapseDataset(rows, transforms=lambda d: d, samples_per_epoch=40)
    for position in range(40):
        sample = dataset[(0, position)]
        lo, hi = (0, 3) if sample["row"] == 0 else (8, SHAPE[0])
        assert lo <= sample["T"] < hi


def test_sample_errors_name_the_row(stores: list[Path]) -> None:
    rows = [ManifestRow("train", 7, "runs.csv", str(stores[0]), start=10, stop=12)]
    dataset = TimelapseDataset(rows, transforms=lambda d: d, num_timepoints=3)
    with pytest.raises(SampleError, match=r"runs.csv row 7 .*holds 2 timepoint.*num_timepoints=3"):
        dataset[0]
    beyond = [ManifestRow("train", 2, "runs.csv", str(stores[0]), start=0, stop=99)]
    with pytest.raises(SampleError, match=r"runs.csv row 2 .*stop 99 is beyond.*fix start/stop"):
        TimelapseDataset(beyond, transforms=lambda d: d)[0]
    bad_channel = [ManifestRow("train", 4, "runs.csv", str(stores[0]), channels=(5,))]
    with pytest.raises(SampleError, match=r"runs.csv row 4 .*channel 5 out of range"):
        TimelapseDataset(bad_channel, patch_shape=(2, 16, 16))[0]


def test_extra_columns_reach_the_batch(stores: list[Path]) -> None:
    frame = _frame(stores, cell_id=["c1", "c2", "c3"], dose=[0.5, 2.0, 1.0])
    dm = _module(frame, extra_columns=["cell_id", "dose"], split_column=None, batch_size=3)
    batch = next(iter(dm.train_dataloader()))
    assert sorted(batch["cell_id"]) == ["c1", "c2", "c3"]
    assert batch["dose"].is_floating_point() and sorted(batch["dose"].tolist()) == [0.5, 1, 2]


class _Tiny:
    """A tiny Lightning module that records what each training step saw."""

    @staticmethod
    def make(seen: list[Any], channels: int = 2) -> Any:
        import lightning as L

        class Tiny(L.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = torch.nn.Conv3d(channels, channels, 1)

            def training_step(self, batch: dict[str, Any], index: int) -> torch.Tensor:
                seen.append((self.current_epoch, index, batch["T"].tolist()))
                return self.net(batch["raw"]).abs().mean()

            def validation_step(self, batch: dict[str, Any], index: int) -> None:
                self.log("val", self.net(batch["raw"]).mean(), batch_size=len(batch["T"]))

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.SGD(self.parameters(), lr=0.01)

        return Tiny()


def _trainer(**kwargs: Any) -> Any:
    import lightning as L

    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2])
def test_resuming_mid_epoch_continues_the_sequence(
    stores: list[Path], tmp_path: Path, workers: int
) -> None:
    from lightning.pytorch.callbacks import ModelCheckpoint

    frame = _frame(stores)
    kwargs = dict(samples_per_epoch={"train": 10}, num_workers=workers)
    full: list[Any] = []
    every = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    _trainer(max_epochs=2, callbacks=[every], enable_checkpointing=True).fit(
        _Tiny.make(full), _module(frame, **kwargs)
    )
    assert len(full) == 10  # 2 epochs x 5 batches
    resumed: list[Any] = []
    checkpoint = tmp_path / "epoch=0-step=3.ckpt"
    _trainer(max_epochs=2).fit(
        _Tiny.make(resumed), _module(frame, **kwargs), ckpt_path=str(checkpoint)
    )
    assert resumed == full[3:]
    state = torch.load(checkpoint, weights_only=False)
    assert state["RandomTimelapseDatamodule"] == {"epoch": 0, "batches": 3}


_DDP_CHILD = """
import json, sys, torch, torch.distributed as dist, pandas as pd, tlcore
rank, world, init, manifest, out = int(sys.argv[1]), 2, sys.argv[2], sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
dm = tlcore.RandomTimelapseDatamodule(pd.read_csv(manifest), patch_shape=(2, 16, 16),
                                      batch_size=2, samples_per_epoch={"train": 12})
dm.setup("fit")
draws = [[r, t] for b in dm.train_dataloader() for r, t in zip(b["row"].tolist(), b["T"].tolist())]
keys = [list(k) for k in dm.train_dataloader().sampler]
json.dump({"draws": draws, "keys": keys}, open(out, "w"))
dist.destroy_process_group()
"""


# ~24 s: two real torch.distributed (gloo) processes
@pytest.mark.slow
def test_two_ranks_share_an_epoch_without_overlap(stores: list[Path], tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    _frame(stores).to_csv(manifest, index=False)
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DDP_CHILD, str(r), init, str(manifest),
             str(tmp_path / f"{r}.json")],
            stderr=subprocess.PIPE, text=True,
        )
        for r in range(2)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    shares = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    positions = [{tuple(k)[1] for k in s["keys"]} for s in shares]
    assert positions[0].isdisjoint(positions[1])
    # The union of both ranks' draws is exactly what one process draws for the epoch.
    dm = _module(pd.read_csv(manifest), samples_per_epoch={"train": 12})
    single = [
        [r, t] for b in dm.train_dataloader() for r, t in zip(b["row"].tolist(), b["T"].tolist())
    ]
    union = sorted(shares[0]["draws"] + shares[1]["draws"])
    assert len(shares[0]["draws"]) == len(shares[1]["draws"]) == 6
    assert union == sorted(single)


def test_trains_with_lightning_on_zarr_and_real_nd2(
    synthetic_store: Callable[..., Path], testdata: Path
) -> None:
    pytest.importorskip("tlcore_nd2", reason="the tlcore-nd2 plugin is not installed")
    flat = synthetic_store("flat.ome.zarr", shape=(20, 1, 1, 80, 80), chunks=(1, 1, 1, 40, 40))
    nd2 = testdata / "nd2"
    frame = pd.DataFrame(
        {
            "path": [str(flat), str(nd2 / "example-timelapse.nd2"),
                     str(nd2 / "example-multichannel.nd2"), str(nd2 / "example-pbmc.nd2")],
            "channel": ["0", "0", "FITC BP", "0"],
            "split": ["train", "train", "train", "val"],
        }
    )  # fmt: skip
    seen: list[Any] = []
    dm = tlcore.RandomTimelapseDatamodule(
        frame, spatial_dims=2, patch_shape=(32, 32), batch_size=2, samples_per_epoch=6,
        num_timepoints=1,
    )  # fmt: skip

    import lightning as L

    class Tiny2d(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Conv2d(1, 1, 3, padding=1)

        def training_step(self, batch: dict[str, Any], index: int) -> torch.Tensor:
            seen.append(batch["original_path"])
            assert batch["raw"].shape == (2, 1, 32, 32)
            return (self.net(batch["raw"]) - batch["raw"]).pow(2).mean()

        def validation_step(self, batch: dict[str, Any], index: int) -> None:
            assert batch["raw"].shape[1:] == (1, 32, 32)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    _trainer(max_epochs=2).fit(Tiny2d(), dm)
    assert len(seen) == 6
    readers = {Path(p).suffix for batch in seen for p in batch}
    assert readers == {".zarr", ".nd2"}


def test_import_tlcore_stays_free_of_lightning() -> None:
    code = (
        "import sys, tlcore; "
        "print(sorted(m for m in ('lightning', 'torch', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "RandomTimelapseDatamodule" in tlcore.__all__


def test_per_row_reader_options_reach_the_reader(testdata: Path) -> None:
    pytest.importorskip("tlcore_czi", reason="the tlcore-czi plugin is not installed")
    pytest.importorskip("aicspylibczi", reason="CZI tiles need tlcore-czi[tiles]")
    mosaic = str(testdata / "czi" / "mosaic_test.czi")
    frame = pd.DataFrame(
        {"path": [mosaic, mosaic], "split": "train", "options": ["", "czi_tiles=true"],
         "scene": ["", "TR1:M1"]}
    )  # fmt: skip
    dm = _module(frame, spatial_dims=2, patch_shape=None, batch_size=1, split_column="split")
    stitched, tile = (dm.dataset("train")[(0, p)] for p in range(2))
    by_row = {int(s["row"]): s for s in (stitched, tile)}
    assert by_row[0]["raw"].shape[-2:] == (624, 1756)  # stitched mosaic
    assert by_row[1]["raw"].shape[-2:] == (624, 924)  # one raw tile


def test_several_crops_per_opened_timepoint(stores: list[Path]) -> None:
    dm = _module(_frame(stores), crops_per_timepoint=3, samples_per_epoch={"train": 9},
                 batch_size=3)  # fmt: skip
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    for batch in batches:  # a batch is one (row, timepoint): three different crops of it
        assert len(set(batch["row"].tolist())) == 1 and len(set(batch["T"].tolist())) == 1
        boxes = {tuple(m["crop_start"]) for m in batch["raw_meta"]}
        assert len(boxes) > 1
    with pytest.raises(ValueError, match="crops_per_timepoint must be at least 1"):
        _module(_frame(stores), crops_per_timepoint=0).dataset("train")
