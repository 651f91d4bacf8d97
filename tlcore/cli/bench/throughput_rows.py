"""The rows of ``tlcore bench throughput``: the loaders (direct zarr, tlcore, eager), how a
row is timed, and the rows measured apart (chunk counts, aligned crops, decoders in a spawned
process)."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tlcore import progress, vocabulary
from tlcore.cli.bench.throughput_data import (
    Row,
    Settings,
    metadata_only_array,
    random_crops,
    touched_chunks,
)
from tlcore.cli.bench.throughput_report import _format_row


# -- the direct readers (module level, so spawned workers can import them) --------------------
class DirectCrops:
    """A map-style dataset of crops read straight from the store by ``backend``: ``zarr``,
    ``zarrs`` (zarr with the zarrs codec pipeline), ``tensorstore`` or ``eager`` (the whole
    timepoint, then the crop). Handles open on first use in each process."""

    def __init__(
        self, path: Path, crops: list[tuple[int, int, int, int]], crop: Sequence[int], backend: str
    ) -> None:
        self.path, self.crops, self.crop, self.backend = str(path), crops, tuple(crop), backend
        self._array: Any = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.crops)

    def _open(self) -> Any:
        if self._array is None or self._pid != os.getpid():
            if self.backend == "tensorstore":
                import tensorstore as ts

                spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": self.path + "/0"}}
                self._array = ts.open(spec, read=True).result()
            else:
                import zarr

                pipeline = {}
                if self.backend == "zarrs":  # for this array only: zarr's default stays
                    pipeline = {"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}
                with zarr.config.set(pipeline):
                    self._array = zarr.open_array(self.path, path="0", mode="r")
            self._pid = os.getpid()
        return self._array

    def __getitem__(self, i: int) -> Any:
        import torch

        array = self._open()
        t, z, y, x = self.crops[i]
        cz, cy, cx = self.crop
        if self.backend == "eager":
            block = np.asarray(array[t, 0])[z : z + cz, y : y + cy, x : x + cx]
        elif self.backend == "tensorstore":
            block = array[t, 0:1, z : z + cz, y : y + cy, x : x + cx].read().result()
        else:
            block = np.asarray(array[t, 0:1, z : z + cz, y : y + cy, x : x + cx])
        return torch.from_numpy(block.astype(np.float32).reshape(1, cz, cy, cx))


class FixedCropd:
    """Crops the lazy array to the box the sample names (``crop_z``, ``crop_y``, ``crop_x``),
    like any spatial crop: the benchmark's way to give tlcore the direct row's crops."""

    def __init__(self, key: str, size: Sequence[int]) -> None:
        self.key, self.size = key, tuple(size)

    def __call__(self, d: dict[str, Any]) -> dict[str, Any]:
        start = [int(d[f"crop_{a}"]) for a in "zyx"]
        box = tuple(slice(s, s + n) for s, n in zip(start, self.size))
        return {**d, self.key: d[self.key][(slice(None), *box)]}


# -- running -------------------------------------------------------------------------------------
def _timed(batches: Iterator[Any], n_batches: int, skip: int) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (the whole process tree) for the batches after the first
    ``skip`` ones, and how many batches that was."""
    skip = min(skip, max(0, n_batches - 1))
    t0 = time.perf_counter()
    base = os.times()
    cpu0 = _tree_cpu(base, live=True)
    for i, _ in enumerate(batches):
        if i + 1 == skip:
            t0 = time.perf_counter()
            cpu0 = _tree_cpu(base, live=True)
    seconds = time.perf_counter() - t0
    # The exhausted iterator has joined its workers: their CPU is now in our children's times.
    return seconds, _tree_cpu(base, live=False) - cpu0, n_batches - skip


def _tree_cpu(base: Any, live: bool) -> float:
    """CPU seconds of this process plus its children since ``base`` (``os.times()``): the
    running children read from ``/proc`` (``live``), or the reaped ones from ``os.times``."""
    now = os.times()
    cpu = now.user + now.system
    if not live:
        reaped = (now.children_user + now.children_system) - (
            base.children_user + base.children_system
        )
        return float(cpu + reaped)
    from tlcore.memory import tree

    tick = os.sysconf("SC_CLK_TCK")
    for pid in tree()[1:]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return float(cpu)


@contextlib.contextmanager
def _env(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _measure(
    name: str,
    loader: Callable[[], Any],
    crops: list[tuple[int, int, int, int]],
    settings: Settings,
    workers: int,
    *,
    decoded_per_crop: Callable[[tuple[int, int, int, int]], int] | None = None,
    start_method: str = "fork",
    note: str = "",
) -> Row:
    from tlcore.memory import TreeMemory

    crop_bytes = math.prod(settings.crop) * 2
    chunk_bytes = math.prod(settings.chunks) * 2

    def decoded(c: tuple[int, int, int, int]) -> int:
        if decoded_per_crop is not None:
            return decoded_per_crop(c)
        return touched_chunks(c[1:], settings.crop, settings.chunks) * chunk_bytes

    with TreeMemory() as memory:
        # Skip each worker's first batch and the prefetched ones: start-up is no per-crop cost.
        batches = progress.track(loader(), f"{name} (workers={workers})", len(crops))
        seconds, cpu, n = _timed(batches, len(crops), max(1, 2 * workers))
    mean_decoded = statistics.fmean(decoded(c) for c in crops)
    rate = n / seconds if seconds > 0 else float("nan")
    return Row(
        name=name,
        workers=workers,
        crops=n,
        seconds=round(seconds, 3),
        crops_per_s=round(rate, 2),
        decoded_mb_per_s=round(rate * mean_decoded / 1e6, 1),
        amplification=round(mean_decoded / crop_bytes, 2),
        peak_rss_mb=_mb(memory.peak_rss),
        peak_pss_mb=_mb(memory.peak_pss),
        start_method=start_method if workers else "-",
        note=note,
        cpu_ms_per_crop=round(cpu / n * 1e3, 2) if n else None,
    )


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def _direct_loader(
    path: Path,
    crops: list[tuple[int, int, int, int]],
    settings: Settings,
    workers: int,
    backend: str,
    start_method: str | None,
) -> Callable[[], Any]:
    from torch.utils.data import DataLoader

    def make() -> Any:
        return DataLoader(
            DirectCrops(path, crops, settings.crop, backend),  # type: ignore[arg-type]
            batch_size=1,
            num_workers=workers,
            multiprocessing_context=start_method if workers else None,
        )

    return make


def _tlcore_loader(
    path: Path,
    crops: list[tuple[int, int, int, int]],
    settings: Settings,
    workers: int,
    start_method: str | None = None,
    transforms: Any = None,
    samples: int | None = None,
) -> Callable[[], Any]:
    from tlcore.training.datamodule import RandomTimelapseDatamodule

    if transforms is None:
        transforms = _pipeline(settings)
    table = {
        "path": [str(path)] * len(crops),
        "start": [c[0] for c in crops],
        "stop": [c[0] + 1 for c in crops],
        "crop_z": [c[1] for c in crops],
        "crop_y": [c[2] for c in crops],
        "crop_x": [c[3] for c in crops],
    }

    def make() -> Any:
        module = RandomTimelapseDatamodule(
            {"dict_meta": table},
            transforms=transforms,
            split_column=None,
            extra_columns=("crop_z", "crop_y", "crop_x"),
            samples_per_epoch=samples,
            num_workers=workers,
            multiprocessing_context=start_method if workers else None,
            validate=False,
        )
        module.setup("fit")
        return module.train_dataloader()

    return make


def _pipeline(settings: Settings) -> Any:
    """The tlcore rows' sample pipeline: load lazily, crop to the sample's box, compute."""
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, LoadLazyd

    return Compose([
        LoadLazyd(keys="raw"),
        FixedCropd("raw", settings.crop),
        ComputeDaskd(keys="raw", dtype="float32"),
    ])  # fmt: skip


def _decoder_usable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _in_spawned_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh spawned process (for libraries this process must not use)."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def _one_process_decoder_rows(
    path: Path, crops: list[tuple[int, int, int, int]], settings: Settings, names: list[str]
) -> list[Row]:
    """In one (spawned) process, no workers: each decoder's direct reads and tlcore with it."""
    import torch

    torch.set_num_threads(1)
    rows = []
    for name in names:
        rows.append(_measure(name, _direct_loader(path, crops, settings, 0, name, None), crops,
                             settings, 0, note=f"direct {name} reads, one process"))  # fmt: skip
        with _env(TLCORE_DECODER=name):
            loader = _tlcore_loader(path, crops, settings, 0)
            rows.append(_measure(f"tlcore+{name}", loader, crops, settings, 0,
                                 note=f"TLCORE_DECODER={name}, one process"))  # fmt: skip
    return rows


def _chunk_count_rows(settings: Settings, n_chunks: int, log: Callable[[str], None]) -> list[Row]:
    """One process, fill-value chunks: what the path costs per crop over direct zarr."""
    import zarr

    from tlcore.lazy.compute import compute
    from tlcore.readers.api import open_lazy

    path = metadata_only_array(settings, n_chunks)
    raw = zarr.open_array(str(path), path="0", mode="r")
    total = int(np.prod(raw.cdata_shape))
    small = Settings(**{**asdict(settings), "timepoints": raw.shape[0]})
    crops = random_crops(small, 40, seed=1)
    image = open_lazy(path)

    def box(c: tuple[int, int, int, int]) -> tuple[Any, ...]:
        t, z, y, x = c
        cz, cy, cx = settings.crop
        return (t, slice(0, 1), slice(z, z + cz), slice(y, y + cy), slice(x, x + cx))

    def per_crop(fn: Callable[[tuple[int, int, int, int]], Any]) -> float:
        t0 = time.perf_counter()
        for c in crops:
            fn(c)
        return (time.perf_counter() - t0) / len(crops)

    pipeline = _pipeline(settings)
    sample = {vocabulary.PATH: str(path)}
    paths: dict[str, Callable[[tuple[int, int, int, int]], Any]] = {
        "direct": lambda c: np.asarray(raw[box(c)]),
        "tlcore": lambda c: compute(image.data[box(c)]),
        "tlcore-pipeline": lambda c: pipeline(
            {
                **sample,
                vocabulary.TIMEPOINTS: c[0],
                **dict(zip(("crop_z", "crop_y", "crop_x"), c[1:])),
            }
        ),
        "tlcore-dask": lambda c: compute(image.data[box(c)], "synchronous", direct=False),
    }
    for fn in paths.values():
        fn(crops[0])  # first-call costs (opening, imports) are no per-crop cost
    # Interleaved passes, best of each: a shared machine's load moves all paths alike.
    best = {name: math.inf for name in paths}
    # zarr decodes in every path, so the difference is the path's own cost (tlcore's decoder
    # would skip zarr's per-chunk work for the unwritten chunks and hide it).
    with _env(TLCORE_DECODER="zarr"):
        for _ in range(3):
            for name, fn in paths.items():
                best[name] = min(best[name], per_crop(fn))
    direct = best["direct"]
    chunk = (8, settings.chunks[1] // 4, settings.chunks[2] // 4)
    mean_touched = statistics.fmean(touched_chunks(c[1:], settings.crop, chunk) for c in crops)
    out = []
    for name, seconds in best.items():
        note = (
            f"{total:,} chunks, {mean_touched:.0f} touched per crop, fill value only, zarr decoding"
        )
        if name != "direct":
            note += f"; +{(seconds - direct) * 1e3:.1f} ms per crop over direct"
        row = Row(f"chunks-{total}:{name}", 0, len(crops), round(seconds * len(crops), 3),
                  round(1 / seconds, 1), 0.0, None, None, None, "-", note)  # fmt: skip
        log(_format_row(row))
        out.append(row)
    return out


def _aligned_row(path: Path, settings: Settings, log: Callable[[str], None]) -> Row | None:
    """Chunk-aligned random crops through the decoded-chunk cache (the lazy-loading issue's
    pieces), through the same DataLoader; None when those pieces are not installed."""
    import inspect

    from monai.transforms import Compose

    from tlcore import transforms as tf

    crop_params = inspect.signature(tf.RandLazyCropd).parameters
    load_params = inspect.signature(tf.LoadLazyd).parameters
    if "align_to_chunks" not in crop_params or "chunk_cache" not in load_params:
        log("aligned+cache: not measured (RandLazyCropd(align_to_chunks) / LoadLazyd(chunk_cache)"
            " are not in this tlcore)")  # fmt: skip
        return None
    pipeline = Compose([
        tf.LoadLazyd(keys="raw", chunk_cache=512 * 2**20),
        tf.RandLazyCropd(keys="raw", roi_size=settings.crop, align_to_chunks=True),
        tf.ComputeDaskd(keys="raw", dtype="float32"),
    ])  # fmt: skip
    crops = random_crops(settings, settings.crops)
    per_crop_chunks = math.prod(settings.chunks) * 2  # at most one chunk per aligned crop
    return _measure(
        "aligned+cache",
        _tlcore_loader(path, crops, settings, settings.workers, transforms=pipeline),
        crops,
        settings,
        settings.workers,
        decoded_per_crop=lambda c: per_crop_chunks,
        note="different sampling: chunk-aligned random crops, decoded-chunk cache 512 MiB; "
        "decoded bytes are an upper bound (cache hits decode nothing)",
    )
