"""How ``tlcore bench memory`` measures: the pipelines (no-op, eager, lazy), the process
tree's peak memory while a DataLoader runs, and the foreground cost."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from tlcore import vocabulary
from tlcore.cli.bench.memory_data import Settings
from tlcore.progress import track


class _Samples:
    """A torch-style dataset: sample i reads timepoint i % T through ``pipeline``."""

    def __init__(self, path: Path, n: int, timepoints: int, pipeline: Callable[..., Any]) -> None:
        self.path, self.n, self.timepoints, self.pipeline = str(path), n, timepoints, pipeline

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        set_state = getattr(self.pipeline, "set_random_state", None)
        if set_state is not None:
            set_state(seed=i)
        out = self.pipeline(
            {vocabulary.PATH: self.path, vocabulary.TIMEPOINTS: i % self.timepoints}
        )
        return out["raw"].as_tensor() if hasattr(out["raw"], "as_tensor") else out["raw"]


class _Noop:
    """The lazy pattern's Python work without a pixel: open (metadata), crop the lazy array,
    return zeros instead of computing. The floor."""

    def __init__(self, crop: tuple[int, int, int]) -> None:
        from monai.transforms import RandSpatialCropd

        from tlcore.transforms import LoadLazyd

        self.crop = crop
        self.load = LoadLazyd(keys="raw")
        self.cut = RandSpatialCropd(keys=["raw"], roi_size=list(crop), random_size=False)

    def __call__(self, d: dict[Hashable, Any]) -> dict[Hashable, Any]:
        import torch

        out = self.cut(self.load(d))
        return {**out, "raw": torch.zeros((1, *self.crop), dtype=torch.float16)}


def _pipelines(settings: Settings) -> dict[str, Any]:
    from monai.transforms import Compose, RandSpatialCropd

    from tlcore.transforms import BioIOImageLoaderd, ComputeDaskd, LoadLazyd, RandLazyCropd

    crop = list(settings.crop)
    return {
        "noop": _Noop(settings.crop),
        "lazy": Compose([
            BioIOImageLoaderd(path_key=vocabulary.PATH, out_key="raw", dask_load=True,
                              lazy_load=True, dtype="float16"),
            RandSpatialCropd(keys=["raw"], roi_size=crop, random_size=False),
            ComputeDaskd(keys=["raw"], dtype="float16"),
        ]),
        "lazy-aligned": Compose([
            LoadLazyd(keys="raw", chunk_cache=0),
            RandLazyCropd(keys="raw", roi_size=settings.crop, align_to_chunks=True),
            ComputeDaskd(keys="raw", dtype="float16"),
        ]),
        "eager": Compose([
            BioIOImageLoaderd(path_key=vocabulary.PATH, out_key="raw", dask_load=True,
                              lazy_load=False, dtype="float16"),
            RandSpatialCropd(keys=["raw"], roi_size=crop, random_size=False),
            ComputeDaskd(keys=["raw"], dtype="float16", warn_bytes=None),
        ]),
    }  # fmt: skip


class _TreePeaks:
    """Peak RSS, PSS and anonymous PSS of this process tree, sampled on a thread.

    Anonymous PSS (``Pss_Anon``) is shared only within the tree (copy-on-write after fork), so
    it does not move when unrelated processes on the machine map the same libraries, which
    changes every tree process's share of torch's file pages, hence its PSS."""

    fields = ("Rss:", "Pss:", "Pss_Anon:")

    def __init__(self, interval: float = 0.02) -> None:
        import threading

        self.interval = interval
        self.peaks = dict.fromkeys(self.fields, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        from tlcore.memory import tree

        totals = dict.fromkeys(self.fields, 0)
        for pid in tree():
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                head = line.split(maxsplit=1)[0] if line else ""
                if head in totals:
                    totals[head] += int(line.split()[1]) * 1024
        for k, v in totals.items():
            self.peaks[k] = max(self.peaks[k], v)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> _TreePeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _measure(path: Path, settings: Settings, name: str, pipeline: Any, n: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    dataset = _Samples(path, n, settings.timepoints, pipeline)
    loader: DataLoader[Any] = DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=1,
        num_workers=settings.workers,
        multiprocessing_context="fork",
        collate_fn=lambda batch: batch[0],
    )
    _wait_for_children()  # the previous row's workers must not count in this one
    # A garbage collection in a forked worker writes to every object it inherited, which
    # copies the parent's whole heap (~100 MiB with torch and MONAI) into that worker, at a
    # moment that depends on how much the row allocates. Frozen objects are never scanned:
    # the rows then differ by what they do, not by when a collection happened.
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    with _TreePeaks() as memory:
        count = sum(1 for _ in track(loader, f"  {name}", total=n, unit="samples"))
    return {
        "row": name,
        "samples": count,
        "seconds": time.perf_counter() - t0,
        "peak_rss_bytes": memory.peaks["Rss:"],
        "peak_pss_bytes": memory.peaks["Pss:"],
        "peak_pss_anon_bytes": memory.peaks["Pss_Anon:"],
    }


def _wait_for_children(timeout: float = 60.0) -> None:
    """Wait until this process has no child processes left (exiting DataLoader workers)."""
    from tlcore.memory import tree

    deadline = time.monotonic() + timeout
    while len(tree()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)


def _available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _foreground_cost(path: Path, settings: Settings) -> dict[str, float]:
    """Milliseconds for the first foreground-weighted crop of a timepoint (which computes its
    coarse map; measured on a timepoint after the first, so opening the file and the coarse
    level is not counted) and for later crops of it, against uniform crops, in this
    process."""
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, Foreground, LoadLazyd, RandLazyCropd, foreground

    foreground.clear()
    pipeline = Compose([
        LoadLazyd(keys="raw"),
        RandLazyCropd(keys="raw", roi_size=settings.crop, foreground=Foreground(threshold=1000)),
        ComputeDaskd(keys="raw", dtype="float16"),
    ])  # fmt: skip
    plain = Compose([
        LoadLazyd(keys="raw"),
        RandLazyCropd(keys="raw", roi_size=settings.crop),
        ComputeDaskd(keys="raw", dtype="float16"),
    ])  # fmt: skip
    plain(
        {vocabulary.PATH: str(path), vocabulary.TIMEPOINTS: 0}
    )  # open the file: measured apart from the map
    pipeline(
        {vocabulary.PATH: str(path), vocabulary.TIMEPOINTS: 0}
    )  # warm: first reads of the coarse level
    sample = {
        vocabulary.PATH: str(path),
        vocabulary.TIMEPOINTS: settings.timepoints - 1,
    }  # a new timepoint
    t0 = time.perf_counter()
    pipeline(sample)
    first = time.perf_counter() - t0
    times, base = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        pipeline(sample)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain(sample)
        base.append(time.perf_counter() - t0)
    return {
        "foreground_first_crop_ms": first * 1e3,
        "foreground_crop_ms": float(np.median(times)) * 1e3,
        "uniform_crop_ms": float(np.median(base)) * 1e3,
    }
