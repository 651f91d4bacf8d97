"""tlcore vs bioio's BioImage on the ND2 samples: metadata open time and one random
single-timepoint crop, interleaved in one process, medians and ratios (tlcore / bioio).

    .venv/bin/python plugins/tlcore-nd2/benchmarks/bench_nd2.py [TESTDATA_DIR] [--n 30]

Open: tlcore.open_lazy with the plugin's metadata cache cleared (a cold parse of the file)
vs BioImage(path) plus dims, pixel sizes and channel names. Crop: half of Y and X, every
channel and Z, at a random timepoint, computed (tlcore: synchronous scheduler; bioio: its
get_image_dask_data path, default scheduler).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import tlcore
from tlcore_nd2.metadata import _load_cached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "testdata", nargs="?", default=str(Path(__file__).parents[4] / "shared/testdata")
    )
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    from bioio import BioImage

    rng = random.Random(0)
    print(
        f"{'file':28} {'open tl ms':>10} {'open bio':>9} {'ratio':>6} "
        f"{'crop tl ms':>10} {'crop bio':>9} {'ratio':>6}"
    )
    for path in sorted(Path(args.testdata, "nd2").glob("*.nd2")):
        _ = BioImage(path).dims  # warm imports and plugin scan once
        tlcore.open_lazy(path)
        open_tl, open_bio, crop_tl, crop_bio = [], [], [], []
        for _ in range(args.n):
            _load_cached.cache_clear()
            t0 = time.perf_counter()
            image = tlcore.open_lazy(path)
            open_tl.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            bio = BioImage(path)
            _ = (bio.dims, bio.physical_pixel_sizes, bio.channel_names)
            open_bio.append(time.perf_counter() - t0)
            T, _, _, Y, X = image.shape
            t, h, w = rng.randrange(T), Y // 2, X // 2
            y, x = rng.randrange(Y - h + 1), rng.randrange(X - w + 1)
            t0 = time.perf_counter()
            a = image.data[t, :, :, y : y + h, x : x + w].compute(scheduler="synchronous")
            crop_tl.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = bio.get_image_dask_data("CZYX", T=t)[:, :, y : y + h, x : x + w].compute()
            crop_bio.append(time.perf_counter() - t0)
            assert (a == b).all()
        m = [statistics.median(v) * 1000 for v in (open_tl, open_bio, crop_tl, crop_bio)]
        print(
            f"{path.name:28} {m[0]:10.2f} {m[1]:9.2f} {m[0] / m[1]:6.2f} "
            f"{m[2]:10.2f} {m[3]:9.2f} {m[2] / m[3]:6.2f}"
        )


if __name__ == "__main__":
    main()
