"""What the conformance kit does not know: real timestamps, frame access, bad files, the CLI."""

from __future__ import annotations

import dataclasses
import json
import mmap
import multiprocessing
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import nd2
import numpy as np
import pytest

import tlcore
from tlcore import Source
from tlcore_nd2.array import FrameFile, ND2ArrayReader
from tlcore_nd2.metadata import load, scene_ids
from tlcore_nd2.reader import hooks

ROOT = Path(__file__).resolve().parents[3]
TLCORE = str(ROOT / ".venv" / "bin" / "tlcore")


@pytest.fixture
def nd2_dir(testdata: Path) -> Path:
    return testdata / "nd2"


def timelapse_copy(nd2_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "timelapse.nd2"
    shutil.copyfile(nd2_dir / "example-timelapse.nd2", path)
    return path


def patch_frame_entry(
    path: Path, frame: int, *, offset: int | None = None, rename: bytes = b""
) -> None:
    """Edit the chunk-map entry of one frame at the end of the file: move its offset, or
    rename it so the frame is missing. Bumps the mtime so cached metadata is re-read."""
    data = bytearray(path.read_bytes())
    key = f"ImageDataSeq|{frame}!".encode()
    at = data.rfind(key)  # the chunk map is the last occurrence, at the end of the file
    assert at > len(data) // 2
    if offset is not None:
        data[at + len(key) : at + len(key) + 8] = struct.pack("<Q", offset)
    if rename:
        assert len(rename) == len(key)
        data[at : at + len(key)] = rename
    path.write_bytes(bytes(data))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def run_info(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TLCORE, "info", str(path), "--json"], capture_output=True, text=True, timeout=120
    )


# -- time ------------------------------------------------------------------------------------
def test_timelapse_has_real_timestamps(nd2_dir: Path) -> None:
    path = nd2_dir / "example-timelapse.nd2"
    axis = tlcore.time_axis(path)
    assert axis.size == 53 and axis.timestamps is not None and len(axis.timestamps) == 53
    steps = np.diff(axis.timestamps)
    assert axis.timestamps[0] == 0.0
    assert np.all(np.abs(steps - 0.5) < 0.01), steps
    # NIS' own average period is 500.16 ms; bioio's 0.58 s would fail here.
    assert axis.interval == pytest.approx(0.50016, rel=1e-4)
    with nd2.ND2File(path) as f:  # independently: the recorded frame times
        times = np.asarray(f.events(orient="list")["Time [s]"])
    assert np.allclose(axis.timestamps, times - times[0])


def test_single_timepoint_has_one_timestamp_and_no_interval(nd2_dir: Path) -> None:
    for name in ("example-cerevisiae.nd2", "example-zstack.nd2"):
        axis = tlcore.time_axis(nd2_dir / name)
        assert axis.size == 1 and axis.timestamps == (0.0,) and axis.interval is None


def test_loop_period_is_the_fallback_without_frame_times(nd2_dir: Path) -> None:
    meta = dataclasses.replace(load(Source.from_any(nd2_dir / "example-timelapse.nd2")))
    no_times = dataclasses.replace(meta, frame_times=None)
    axis = no_times.time_axis(0)
    # periodMs is 0 ("as fast as possible"): the measured average period NIS stores
    assert axis.timestamps is None and axis.interval == pytest.approx(0.50016, rel=1e-6)
    backwards = dataclasses.replace(meta, frame_times=tuple(-t for t in meta.frame_times or ()))
    assert backwards.time_axis(0).timestamps is None


# -- frame access ----------------------------------------------------------------------------
def test_frames_are_memory_mapped_views(nd2_dir: Path) -> None:
    frames = FrameFile(str(nd2_dir / "example-multichannel.nd2"))
    frame = frames.frame(0, 4, 1)
    assert frame.shape == (4, 256, 256, 1)
    base: Any = frame
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base, mmap.mmap), "read_frame copied: a crop would read the whole frame"


def test_crop_equals_native_frame(nd2_dir: Path) -> None:
    path = nd2_dir / "example-timelapse.nd2"
    image = tlcore.open_lazy(path)
    crop = image.data[37, :, :, 10:50, 5:33].compute(scheduler="synchronous")
    with nd2.ND2File(path) as f:
        want = np.array(f.read_frame(37)[10:50, 5:33])
    assert crop.shape == (1, 1, 40, 28) and np.array_equal(crop[0, 0], want)


def test_zstack_crop_picks_the_right_planes(nd2_dir: Path) -> None:
    path = nd2_dir / "example-zstack.nd2"
    image = tlcore.open_lazy(path)
    assert image.data.chunksize == (1, 1, 1, 128, 128)
    crop = image.data[0, 0, 3:7, 20:90, 40:100].compute(scheduler="synchronous")
    with nd2.ND2File(path) as f:
        want = np.stack([np.array(f.read_frame(z)[20:90, 40:100]) for z in range(3, 7)])
    assert np.array_equal(crop, want)


def _rgb_meta(nd2_dir: Path) -> Any:
    meta = load(Source.from_any(nd2_dir / "example-cerevisiae.nd2"))
    return dataclasses.replace(meta, frame_channels=2, samples=3)


class ArrayFrames(FrameFile):
    """Frames from an array in nd2's (C, Y, X, S) layout: no RGB ND2 sample exists and nd2
    cannot write one, so the sample-to-channel mapping is checked on known values."""

    def __init__(self, frames: np.ndarray) -> None:
        super().__init__("")
        self.frames = frames

    def frame(self, index: int, frame_channels: int, samples: int) -> np.ndarray:
        out: np.ndarray = self.frames[index]
        return out


def test_rgb_samples_become_channels(nd2_dir: Path) -> None:
    meta = _rgb_meta(nd2_dir)
    reader = ND2ArrayReader(Source.from_any(meta.path), 0, meta)
    assert reader.shape == (1, 6, 1, 256, 256)
    frames = np.arange(2 * 256 * 256 * 3, dtype=np.uint16).reshape(1, 2, 256, 256, 3)
    box = (slice(0, 1), slice(1, 5), slice(0, 1), slice(3, 9), slice(7, 20))
    got = reader._read(ArrayFrames(frames), box)
    # channel k is frame channel k // 3, sample k % 3 (R, G, B of each channel in turn)
    want = np.stack([frames[0, k // 3, 3:9, 7:20, k % 3] for k in range(1, 5)])
    assert got.shape == (1, 4, 1, 6, 13) and np.array_equal(got[0, :, 0], want)
    names = ("DIC:R", "DIC:G", "DIC:B", "FITC BP:R", "FITC BP:G", "FITC BP:B")
    from tlcore_nd2.metadata import _channel_names

    with nd2.ND2File(meta.path) as f:
        assert _channel_names(f, 2, 3) == names


def test_large_uncompressed_frames_are_tiled(nd2_dir: Path) -> None:
    meta = load(Source.from_any(nd2_dir / "example-cerevisiae.nd2"))
    big = dataclasses.replace(meta, height=8192, width=6000)
    source = Source.from_any(meta.path)
    assert ND2ArrayReader(source, 0, big).chunks == (1, 2, 1, 2048, 2048)
    squeezed = dataclasses.replace(big, compressed=True)  # decoded whole anyway
    assert ND2ArrayReader(source, 0, squeezed).chunks == (1, 2, 1, 8192, 6000)
    assert ND2ArrayReader(source, 0, meta).chunks == (1, 2, 1, 256, 256)


# -- scenes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("names", "ids"),
    [
        (["A1", "B2"], ("A1", "B2")),
        ([None, "B2"], ("XYPos:0", "B2")),
        (["A1", "A1"], ("XYPos:0", "XYPos:1")),
        (["XYPos:1", None], ("XYPos:0", "XYPos:1")),
    ],
)
def test_scene_ids(names: list[str | None], ids: tuple[str, ...]) -> None:
    assert scene_ids(names) == ids


# -- handles ---------------------------------------------------------------------------------
_forked_image: tlcore.LazyImage | None = None


def _forked_crop(_: int) -> tuple[int, int]:
    assert _forked_image is not None
    crop = _forked_image.data[20, :, :, 8:40, 8:40].compute(scheduler="synchronous")
    return int(crop.sum()), os.getpid()


def test_forked_worker_reopens_the_file(nd2_dir: Path) -> None:
    global _forked_image
    image = tlcore.open_lazy(nd2_dir / "example-timelapse.nd2")
    want = int(image.data[20, :, :, 8:40, 8:40].compute(scheduler="synchronous").sum())
    _forked_image = image  # the parent's reader holds an open handle now
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            got, pid = pool.map(_forked_crop, [0])[0]
    finally:
        _forked_image = None
    assert got == want and pid != os.getpid()


def test_pickled_image_holds_no_handle(nd2_dir: Path) -> None:
    image = tlcore.open_lazy(nd2_dir / "example-timelapse.nd2")
    image.data[0].compute(scheduler="synchronous")
    blob = pickle.dumps(image)
    assert b"mmap" not in blob and len(blob) < 20_000
    again = pickle.loads(blob)
    assert np.array_equal(again.data[5].compute(), image.data[5].compute())


def test_hook_module_imports_no_native_library() -> None:
    code = (
        "import sys, tlcore; before = set(sys.modules); import tlcore_nd2.reader; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] in {'nd2', 'dask', 'numpy'}); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# -- bad files -------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.999])
def test_truncated_file_is_a_clear_error(nd2_dir: Path, tmp_path: Path, fraction: float) -> None:
    data = (nd2_dir / "example-timelapse.nd2").read_bytes()
    path = tmp_path / "cut.nd2"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(tlcore.ReaderError, match="truncated or damaged") as info:
        tlcore.open_lazy(path)
    assert str(path) in str(info.value)
    result = run_info(path)
    assert result.returncode != 0 and str(path) in result.stderr
    assert "truncated or damaged" in result.stderr and "Traceback" not in result.stderr


def test_frame_past_end_of_file_is_refused_at_open(nd2_dir: Path, tmp_path: Path) -> None:
    path = timelapse_copy(nd2_dir, tmp_path)
    patch_frame_entry(path, 52, offset=path.stat().st_size + 10**6)
    assert tlcore.list_scenes(path) == ["XYPos:0"]
    for call in (tlcore.open_lazy, tlcore.levels, tlcore.time_axis):
        with pytest.raises(tlcore.ReaderError, match=r"scene 'XYPos:0'.*T=52, Z=0") as info:
            call(path)
        assert str(path) in str(info.value) and "truncated" in str(info.value)
    result = run_info(path)
    assert result.returncode != 0 and "T=52" in result.stderr


def test_frame_missing_from_index_is_refused(nd2_dir: Path, tmp_path: Path) -> None:
    path = timelapse_copy(nd2_dir, tmp_path)
    patch_frame_entry(path, 17, rename=b"ImageDataSeq|99!")  # frame 17 not indexed
    with pytest.raises(tlcore.ReaderError, match=r"1 of its 53 frames .*T=17, Z=0"):
        tlcore.open_lazy(path)


def test_file_damaged_after_pickling_fails_on_read(nd2_dir: Path, tmp_path: Path) -> None:
    path = timelapse_copy(nd2_dir, tmp_path)
    blob = pickle.dumps(tlcore.open_lazy(path))
    patch_frame_entry(path, 52, offset=path.stat().st_size + 10**6)
    again = pickle.loads(blob)
    with pytest.raises(tlcore.ReaderError, match="T=52"):
        again.data[3].compute(scheduler="synchronous")


def test_empty_and_foreign_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.nd2"
    empty.write_bytes(b"")
    assert "ND2 signature" in str(hooks.can_open(Source.from_any(empty)))
    with pytest.raises(tlcore.NoReaderError, match="ND2 signature") as info:
        tlcore.open_lazy(empty)
    assert str(empty) in str(info.value)
    remote = Source.from_any("s3://bucket/movie.nd2")
    assert "local file" in str(hooks.can_open(remote))


# -- command line ----------------------------------------------------------------------------
def test_info_json(nd2_dir: Path) -> None:
    result = run_info(nd2_dir / "example-timelapse.nd2")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["reader"] == "nd2" and len(info["scenes"]) == 1
    scene = info["scenes"][0]
    assert scene["id"] == "XYPos:0" and scene["shape"] == [53, 1, 1, 64, 64]
    assert scene["chunks"] == [1, 1, 1, 64, 64] and scene["levels"] == [[53, 1, 1, 64, 64]]
    assert len(scene["timestamps"]) == 53 and scene["interval"] == pytest.approx(0.50016, 1e-4)
    assert scene["pixel_sizes"] == {"z": None, "y": 0.325, "x": 0.325}
    assert scene["channel_names"] == ["GFP 488 nm"]

    result = run_info(nd2_dir / "example-zstack.nd2")
    scene = json.loads(result.stdout)["scenes"][0]
    assert scene["shape"] == [1, 1, 11, 128, 128] and scene["pixel_sizes"]["z"] == 6.0
