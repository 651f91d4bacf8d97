"""tlcore.predict on generated stores and every format's sample files: tiled equals the model
on the whole image in memory, metadata read back through tlcore, refusals, Lightning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from nets import conv1, conv2, shrinks  # type: ignore[import-not-found]

import tlcore
from tlcore.prediction.errors import PredictionError
from tlcore.prediction.grid import Plan
from tlcore.testing import write_ome_zarr


def whole(model: torch.nn.Module, path: Any, channels: Any = slice(None),
          time: Any = slice(None)) -> np.ndarray:  # fmt: skip
    """The model over the whole image in memory: the reference."""
    image = tlcore.open_lazy(path).data[time][:, channels].compute().astype(np.float32)
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(image)).numpy()


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "movie.ome.zarr"
    return write_ome_zarr(path, (3, 2, 7, 70, 90), dtype="uint16", pixel_sizes_um=(2.0, 0.5, 0.5))


@pytest.mark.parametrize(
    ("blend", "overlap", "workers"),
    [("none", 0, 0), ("gaussian", (2, 8, 8), 2), ("linear", (0, 6, 4), 0)],
)
def test_tiled_equals_whole_image(movie: Path, tmp_path: Path, blend: str, overlap: Any,
                                  workers: int) -> None:  # fmt: skip
    out = tmp_path / "pred.ome.zarr"
    report = tlcore.predict(
        conv2(), movie, out, tile=(3, 24, 32), halo=2, overlap=overlap, blend=blend,
        batch_size=3, num_workers=workers, chunks=(3, 24, 16),
    )  # fmt: skip
    got = zarr.open_array(out / "0")[:]
    want = whole(conv2(), movie)
    assert got.shape == want.shape == (3, 2, 7, 70, 90)
    if blend == "none":
        np.testing.assert_array_equal(got, want)  # one tile per voxel, unweighted: bit-exact
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert report["tiles"] == 3 * 3 * 3 * 3 and report["tiles_skipped"] == 0
    assert report["units_written"] == 3 * 3 * 3 * 6
    assert report["voxels"] == 3 * 7 * 70 * 90 and report["peak_rss_bytes"] > 0
    assert report["out"] == str(out) and report["seconds"] > 0


def test_halo_too_small_shows_seams(movie: Path, tmp_path: Path) -> None:
    """The exactness is the halo's: without one, tile borders differ from the whole image."""
    tlcore.predict(conv2(), movie, tmp_path / "p.ome.zarr", tile=(7, 32, 32), halo=0,
                   blend="none", num_workers=0)  # fmt: skip
    diff = np.abs(zarr.open_array(tmp_path / "p.ome.zarr" / "0")[:] - whole(conv2(), movie))
    assert diff[..., 31:33].max() > 1e-3 and diff[..., 8:24, 8:24].max() == 0


def test_metadata_read_back(movie: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.ome.zarr"
    tlcore.predict(conv2(), movie, out, time="1:3", tile=(7, 64, 64), halo=2, num_workers=0,
                   levels=2, shards=(7, 64, 64), chunks=(7, 32, 32))  # fmt: skip
    source = tlcore.open_lazy(movie)
    pred = tlcore.open_lazy(out)
    assert pred.shape == (2, 2, 7, 70, 90) and pred.dtype == np.float32
    assert pred.pixel_sizes == source.pixel_sizes == (2.0, 0.5, 0.5)
    assert pred.time_axis.interval == pytest.approx(2.0)
    assert pred.channel_names == ("mask", "edges")  # the model's channel_names
    levels = tlcore.levels(out)
    assert [lv.shape for lv in levels] == [(2, 2, 7, 70, 90), (2, 2, 7, 35, 45)]
    assert levels[1].downsampling == (1.0, 1.0, 1.0, 2.0, 2.0)
    full = zarr.open_array(out / "0")
    assert full.chunks == (1, 1, 7, 32, 32) and full.shards == (1, 1, 7, 64, 64)
    np.testing.assert_array_equal(full[:], zarr.open_array(out / "0")[:])
    small = zarr.open_array(out / "1")[:]
    means = full[..., :4, :4].reshape(2, 2, 7, 2, 2, 2, 2).mean(axis=(4, 6))
    np.testing.assert_allclose(small[..., :2, :2], means, rtol=1e-5)  # 2 x 2 means
    meta = json.loads((out / "zarr.json").read_text())["attributes"]
    ome = meta["ome"]
    assert ome["version"] == "0.5"
    axes = ome["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["t", "c", "z", "y", "x"]
    assert axes[0]["unit"] == "second" and axes[4]["unit"] == "micrometer"
    t0 = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]["translation"][0]
    assert t0 == pytest.approx(2.0)  # frame 1 of a 2 s grid
    assert meta["tlcore"]["timestamps"] == pytest.approx([2.0, 4.0])
    assert meta["tlcore"]["predict"]["time"] == [1, 3, 1]


SAMPLES = [
    "czi/CellDivision_T3_Z5_CH2_X240_Y170.czi", "lif/testdata_2channel_xz.lif",
    "nd2/example-timelapse.nd2", "ome-tiff/FOV7_HV110_P0500510000.ome.tiff",
    "ome-zarr/image-04.zarr", "tiff/CH1_16bit.tif",
]  # fmt: skip


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_format(testdata: Path, tmp_path: Path, sample: str) -> None:
    path = testdata / sample
    out = tmp_path / "pred.ome.zarr"
    report = tlcore.predict(conv1(), path, out, channels="0", time="0:2", tile=(4, 48, 48),
                            halo=2, overlap=(0, 8, 8), num_workers=0)  # fmt: skip
    got = zarr.open_array(out / "0")[:]
    want = whole(conv1(), path, channels=[0], time=slice(0, 2))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    source, pred = tlcore.open_lazy(path), tlcore.open_lazy(out)
    for mine, theirs in zip(pred.pixel_sizes, source.pixel_sizes):
        assert mine == (pytest.approx(theirs) if theirs is not None else None)
    assert pred.time_axis.interval == (
        None if source.time_axis.interval is None or pred.shape[0] < 2
        else pytest.approx(source.time_axis.interval)
    )  # fmt: skip
    assert report["tiles"] > 0


def test_refusals(movie: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.ome.zarr"
    kw: dict[str, Any] = dict(tile=(7, 70, 90), halo=0, num_workers=0)
    with pytest.raises(PredictionError, match=r"\(1, 2, 7, 70, 90\).*\(1, 1, 5, 68, 88\)"):
        tlcore.predict(shrinks(), movie, out, **kw)
    assert not out.exists()  # refused on the first batch, before anything is written
    tlcore.predict(conv2(), movie, out, **kw)
    before = (out / "0" / "c" / "0" / "0" / "0" / "0" / "0").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        tlcore.predict(conv2(), movie, out, **kw)
    with pytest.raises(PredictionError, match=r"other settings.*tile"):
        tlcore.predict(conv2(), movie, out, resume=True, **{**kw, "tile": (7, 35, 45)})
    assert (out / "0" / "c" / "0" / "0" / "0" / "0" / "0").read_bytes() == before
    with pytest.raises(PredictionError, match="overlap the input"):
        tlcore.predict(conv2(), movie, movie / "pred.ome.zarr", **kw)
    with pytest.raises(PredictionError, match="overlap the input"):
        tlcore.predict(conv2(), movie, movie, overwrite=True, **kw)
    assert tlcore.open_lazy(movie).shape == (3, 2, 7, 70, 90)  # the input is untouched
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a zarr store"):
        tlcore.predict(conv2(), movie, other, overwrite=True, **kw)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(PredictionError, match="channels"):
        tlcore.predict(conv2(), movie, tmp_path / "x.ome.zarr", channels="0,5", **kw)
    report = tlcore.predict(conv2(), movie, out, overwrite=True, **kw)
    assert report["tiles"] == 3


def test_cli_json_and_error(
    movie: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tlcore.cli import main

    out = tmp_path / "pred.ome.zarr"
    args = ["predict", str(movie), "--model", "nets:conv2", "--out", str(out), "--tile",
            "7,40,40", "--halo", "2", "--num-workers", "0", "--json"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"tiles", "tiles_skipped", "seconds", "peak_rss_bytes", "out"}
    assert report["tiles"] == 3 * 2 * 3
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args[:3], "nets:shrinks", *args[4:], "--overwrite"]) == 2
    assert "(B, C_out, Z, Y, X)" in capsys.readouterr().err


def test_plan_groups_and_weights() -> None:
    plan = Plan(2, (5, 100, 37), (5, 16, 16), (1, 4, 4), (0, 8, 0), (5, 16, 8), "linear")
    tiles = [t for g in plan.groups() for t in g]
    assert len(tiles) == len(set(tiles)) == plan.n_tiles == 2 * 7 * 3
    shares = [sorted(t for b in plan.batches(4, r, 3) for t in b) for r in range(3)]
    assert sorted(t for share in shares for t in share) == sorted(tiles)  # disjoint, complete
    y = plan.axes[1]
    total = np.zeros(100)
    for i, (k0, k1) in enumerate(y.keep):
        total[k0:k1] += y.weight(i)
    np.testing.assert_allclose(total, 1.0)  # linear ramps sum to one


def test_lightning_writes_the_same_store(movie: Path, tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from tlcore.prediction import PredictionDataModule, PredictionWriter

    class Module(pl.LightningModule):
        channel_names = ("mask", "edges")

        def __init__(self) -> None:
            super().__init__()
            self.net = conv2()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    kw: dict[str, Any] = dict(tile=(4, 32, 32), halo=2, overlap=(0, 4, 4), batch_size=2)
    tlcore.predict(conv2(), movie, tmp_path / "plain.ome.zarr", num_workers=0, **kw)
    dm = PredictionDataModule(movie, tmp_path / "lit.ome.zarr", num_workers=1, **kw)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         callbacks=[PredictionWriter(dm)], enable_checkpointing=False)  # fmt: skip
    trainer.predict(Module(), datamodule=dm, return_predictions=False)
    np.testing.assert_array_equal(
        zarr.open_array(tmp_path / "lit.ome.zarr" / "0")[:],
        zarr.open_array(tmp_path / "plain.ome.zarr" / "0")[:],
    )
