"""Whole-timelapse prediction: voxels/s and peak RSS of ``tlcore.predict`` on two input sizes
(memory should stay flat), beside MONAI's ``sliding_window_inference`` over the same image
loaded in memory, each in its own process. Run with ``make bench``; prints the figures and
asserts only that each run answered and that both ways agree.

    python tests/benchmarks/test_predict.py tlcore|monai STORE OUT   # one measurement
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

SIZES = {"small": (2, 1, 16, 256, 256), "large": (8, 1, 16, 512, 512)}
TILE, HALO = (16, 128, 128), (2, 2, 2)


def net() -> object:
    import torch

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv3d(4, 2, 3, padding=1)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 1e-3)
    return model.eval()


def measure(way: str, store: str, out: str) -> dict[str, object]:
    import numpy as np
    import torch

    import tlcore
    from tlcore.memory import TreeMemory

    torch.set_num_threads(2)
    start = time.perf_counter()
    with TreeMemory() as memory:
        if way == "tlcore":
            tlcore.predict(net(), store, out, tile=TILE, halo=HALO, batch_size=2, num_workers=1,
                           progress=False)  # fmt: skip
        else:
            from monai.inferers import sliding_window_inference

            image = tlcore.open_lazy(store).data.compute().astype(np.float32)  # all in memory
            model = net()
            outs = []
            with torch.inference_mode():
                for t in range(image.shape[0]):
                    x = torch.from_numpy(image[t : t + 1])
                    outs.append(sliding_window_inference(
                        x, roi_size=TILE, sw_batch_size=2, predictor=model, overlap=0.125,
                        mode="gaussian",
                    ).numpy())  # fmt: skip
            np.save(out, np.concatenate(outs))
    seconds = time.perf_counter() - start
    voxels = int(np.prod(tlcore.open_lazy(store).shape)) // tlcore.open_lazy(store).shape[1]
    rss_mib = (memory.peak_rss or 0) >> 20
    return {"way": way, "seconds": round(seconds, 2), "voxels": voxels,
            "voxels_per_s": round(voxels / seconds), "peak_rss_mib": rss_mib}  # fmt: skip


def test_predict_flat_memory_against_monai(tmp_path: Path) -> None:
    from tlcore.testing import write_ome_zarr

    rows = []
    for name, shape in SIZES.items():
        store = write_ome_zarr(tmp_path / f"{name}.ome.zarr", shape, chunks=(1, 1, 16, 256, 256))
        for way in ("tlcore", "monai"):
            out = tmp_path / (f"{name}-{way}" + (".ome.zarr" if way == "tlcore" else ".npy"))
            done = subprocess.run(
                [sys.executable, __file__, way, str(store), str(out)],
                capture_output=True, text=True, timeout=3600, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            rows.append({"size": name, **json.loads(done.stdout.strip().splitlines()[-1])})
    print()
    for row in rows:
        print(
            f"{row['size']:>6} {row['way']:>7}: {row['voxels']:>11,} voxels  "
            f"{row['voxels_per_s']:>12,} voxels/s  peak RSS {row['peak_rss_mib']:>6} MiB"
        )
    import numpy as np
    import zarr

    ours = zarr.open_array(tmp_path / "small-tlcore.ome.zarr" / "0")[:]
    theirs = np.load(tmp_path / "small-monai.npy")
    # Halo 2 covers the net's receptive field, so ours is the whole-image result; MONAI pads
    # its windows with zeros inside the image, so agree only away from its window borders.
    assert ours.shape == theirs.shape
    assert np.abs(ours[..., 8:-8, 8:-8] - theirs[..., 8:-8, 8:-8]).max() < 1.0


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2], sys.argv[3])))
