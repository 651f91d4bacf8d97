"""What tlcore needs from an ND2 file, parsed once into plain values (imports ``nd2``).

An ND2 file is a sequence of frames. Each frame holds every channel (and RGB sample) of one
combination of the experiment's loops: time (``TimeLoop``/``NETimeLoop``), stage positions
(``XYPosLoop``) and Z (``ZStackLoop``), nested outermost first. The frame index of a loop
coordinate is therefore a mixed-radix number over the loop counts.

:func:`load` opens the file read-only, reads its metadata (never a pixel) and caches the
result per (path, size, mtime), so the several hook calls tlcore makes for one file parse it
once.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nd2

from tlcore import ReaderError, Source, TimeAxis
from tlcore_nd2 import handles
from tlcore_nd2.handles import damaged_file_error, open_file

#: nd2 experiment loop types and the tlcore axis each one becomes.
LOOP_AXES = {"TimeLoop": "T", "NETimeLoop": "T", "XYPosLoop": "P", "ZStackLoop": "Z"}
#: Suffixes of the channels an RGB(A) frame's samples become.
SAMPLE_NAMES = {3: "RGB", 4: "RGBA"}
#: Where nd2 places pixel data after a frame chunk's start (header + name padding).
_FRAME_DATA_OFFSET = 4096


@dataclass(frozen=True)
class FileMeta:
    """One ND2 file's layout and metadata, as plain values (picklable, no handle).

    ``strides`` gives, per loop axis (``"T"``, ``"P"``, ``"Z"``), how many frames one step
    along that axis skips; an axis the experiment lacks has stride 0. ``frame_times`` holds
    each frame's acquisition time in seconds (NaN where unrecorded), or None when the file has
    none. ``bad_frames`` lists frames that are missing from the file or point past its end.
    """

    path: str
    sizes: Mapping[str, int]  # T, P, Z loop counts (1 when absent)
    strides: Mapping[str, int]
    n_frames: int
    height: int
    width: int
    frame_channels: int  # channels stored in each frame
    samples: int  # components per channel (3 for RGB)
    dtype: str
    compressed: bool
    scene_ids: tuple[str, ...]
    scene_names: tuple[str | None, ...]
    channel_names: tuple[str, ...]
    pixel_sizes: tuple[float | None, float | None, float | None]  # z, y, x in µm
    origins: tuple[tuple[float | None, float | None, float | None] | None, ...]
    frame_times: tuple[float, ...] | None
    loop_interval: float | None
    bad_frames: frozenset[int]
    legacy: bool

    @property
    def n_channels(self) -> int:
        return self.frame_channels * self.samples

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """TCZYX shape of every scene."""
        return (self.sizes["T"], self.n_channels, self.sizes["Z"], self.height, self.width)

    def frame_index(self, t: int, scene: int, z: int) -> int:
        return t * self.strides["T"] + scene * self.strides["P"] + z * self.strides["Z"]

    def where(self, scene: int) -> str:
        return f"{self.path} scene {self.scene_ids[scene]!r}"

    def check_scene(self, scene: int) -> None:
        """Raise a clear error when frames of ``scene`` are missing or cut off: nd2 would
        return them as zeros, and training on blank frames is worse than stopping."""
        if not self.bad_frames:
            return
        bad = sorted(
            (t, z)
            for t in range(self.sizes["T"])
            for z in range(self.sizes["Z"])
            if self.frame_index(t, scene, z) in self.bad_frames
        )
        if bad:
            n = self.sizes["T"] * self.sizes["Z"]
            raise ReaderError(
                f"{self.where(scene)}: {len(bad)} of its {n} frames are missing from the file "
                f"or extend past its end (first at T={bad[0][0]}, Z={bad[0][1]}): the file is "
                "truncated or was not finished writing. Copy it again from the original."
            )

    def time_axis(self, scene: int) -> TimeAxis:
        """Real per-timepoint times from the frames of ``scene`` (first Z, seconds from the
        scene's first frame) and the median step between them; the loop period when the file
        recorded no frame times."""
        size = self.sizes["T"]
        stamps = self._timestamps(scene)
        interval = None
        if stamps is not None and size > 1:
            step = statistics.median(b - a for a, b in itertools.pairwise(stamps))
            interval = step if step > 0 else None
        if interval is None and size > 1:
            interval = self.loop_interval
        return TimeAxis(size=size, timestamps=stamps, interval=interval)

    def _timestamps(self, scene: int) -> tuple[float, ...] | None:
        if self.frame_times is None:
            return None
        raw = [self.frame_times[self.frame_index(t, scene, 0)] for t in range(self.sizes["T"])]
        if not all(math.isfinite(v) for v in raw):
            return None
        stamps = tuple(v - raw[0] for v in raw)
        # All-zero or backwards times are not a record of acquisition: report none.
        backwards = any(b < a for a, b in itertools.pairwise(stamps))
        if len(stamps) > 1 and (stamps[-1] <= 0 or backwards):
            return None
        return stamps


def load(source: Source) -> FileMeta:
    """The metadata of a local ND2 file, cached while the file is unchanged."""
    st = os.stat(source.uri)
    return _load_cached(source.uri, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, size: int, mtime_ns: int) -> FileMeta:
    f = open_file(path)
    try:
        meta = _parse(f, path, size)
    except ReaderError:
        f.close()
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        f.close()
        raise damaged_file_error(path, exc) from exc
    handles.keep_spare(path, size, mtime_ns, f)  # the first reader takes it over
    return meta


def _parse(f: nd2.ND2File, path: str, file_size: int) -> FileMeta:
    loops = list(f.experiment)
    axes: list[str] = []
    for loop in loops:
        axis = LOOP_AXES.get(loop.type)
        if axis is None and loop.count > 1:
            raise ReaderError(
                f"{path}: its experiment has a {loop.type} of {loop.count} frames, which tlcore "
                "cannot map to time, Z or stage positions; open it with the nd2 library directly"
            )
        if axis is not None and axis in axes and loop.count > 1:
            raise ReaderError(
                f"{path}: its experiment nests two {loop.type}s; tlcore reads one loop per axis"
            )
        axes.append(axis or "?")
    counts = [int(loop.count) for loop in loops]
    sizes = {"T": 1, "P": 1, "Z": 1}
    strides = {"T": 0, "P": 0, "Z": 0}
    for i, (axis, count) in enumerate(zip(axes, counts)):
        if axis in sizes and count > 1:
            sizes[axis] = count
            strides[axis] = math.prod(counts[i + 1 :])
    n_frames = math.prod(counts)

    attrs = f.attributes
    frame_channels = int(attrs.channelCount or 1)
    samples = int(attrs.componentCount) // frame_channels
    if samples < 1 or frame_channels * samples != attrs.componentCount:
        raise ReaderError(
            f"{path}: {attrs.componentCount} components do not split into "
            f"{frame_channels} channels; the file's attributes are inconsistent"
        )
    scene_ids, scene_names, origins = _scenes(f, loops, sizes["P"])
    return FileMeta(
        path=path,
        sizes=sizes,
        strides=strides,
        n_frames=n_frames,
        height=int(attrs.heightPx),
        width=int(attrs.widthPx or 0),
        frame_channels=frame_channels,
        samples=samples,
        dtype=str(f.dtype),
        compressed=attrs.compressionType is not None,
        scene_ids=scene_ids,
        scene_names=scene_names,
        channel_names=_channel_names(f, frame_channels, samples),
        pixel_sizes=_pixel_sizes(f, loops),
        origins=origins,
        frame_times=_frame_times(f, n_frames),
        loop_interval=_loop_interval(loops),
        bad_frames=_bad_frames(f, n_frames, file_size),
        legacy=bool(f.is_legacy),
    )


def _scenes(
    f: nd2.ND2File, loops: Sequence[Any], n: int
) -> tuple[
    tuple[str, ...],
    tuple[str | None, ...],
    tuple[tuple[float | None, float | None, float | None] | None, ...],
]:
    """Scene ids (position names when every one is unique, else ``XYPos:<i>`` as bioio-nd2
    names unnamed positions), names, and stage origins z, y, x in µm."""
    xy = next((lp for lp in loops if lp.type == "XYPosLoop"), None)
    points = list(xy.parameters.points) if xy is not None else []
    if xy is None or len(points) != n:
        plain_ids = tuple(f"XYPos:{i}" for i in range(n))
        first = (_first_frame_origin(f),) if n == 1 else (None,) * n
        return plain_ids, (None,) * n, first
    names = [p.name or None for p in points]
    ids = scene_ids(names)
    setting_z = bool(getattr(xy.parameters, "isSettingZ", False))
    origins = tuple(_stage_origin(p.stagePositionUm, with_z=setting_z) for p in points)
    return tuple(ids), tuple(names), origins


def scene_ids(names: Sequence[str | None]) -> tuple[str, ...]:
    """Position names as scene ids, ``XYPos:<i>`` for an unnamed one (as bioio-nd2 does);
    when that leaves two equal ids, every position is ``XYPos:<i>`` so ids stay unique."""
    candidates = [name or f"XYPos:{i}" for i, name in enumerate(names)]
    if len(set(candidates)) == len(candidates):
        return tuple(candidates)
    return tuple(f"XYPos:{i}" for i in range(len(names)))


def _stage_origin(
    stage: Any, *, with_z: bool = True
) -> tuple[float | None, float | None, float | None] | None:
    if stage is None:
        return None
    values = []
    for name in ("z", "y", "x"):
        v = getattr(stage, name, None)
        value = float(v) if v is not None and (with_z or name != "z") else math.nan
        values.append(value if math.isfinite(value) else None)
    return (values[0], values[1], values[2])


def _first_frame_origin(f: nd2.ND2File) -> tuple[float | None, float | None, float | None] | None:
    try:
        frame = f.frame_metadata(0)
        channels = getattr(frame, "channels", None)
        return _stage_origin(channels[0].position.stagePositionUm) if channels else None
    except (NotImplementedError, ValueError, KeyError, IndexError, AttributeError, TypeError):
        return None  # legacy files and sparse metadata: the origin is simply unknown


def _channel_names(f: nd2.ND2File, frame_channels: int, samples: int) -> tuple[str, ...]:
    """One name per output channel; an RGB frame's samples become ``<name>:R/G/B``."""
    try:
        names = [c.channel.name for c in (f.metadata.channels or [])]
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        names = []
    if len(names) != frame_channels or not all(names):
        names = [f"Channel:{c}" for c in range(frame_channels)]
    if samples == 1:
        return tuple(names)
    suffixes = SAMPLE_NAMES.get(samples) or [str(s) for s in range(samples)]
    return tuple(f"{name}:{s}" for name in names for s in suffixes)


def _positive(value: Any) -> float | None:
    """A physical size in µm, or None where the file has none. Negative calibrations (a
    flipped axis) keep their magnitude: a pixel's size is never negative."""
    if value is None:
        return None
    v = abs(float(value))
    return v if math.isfinite(v) and v > 0 else None


def _pixel_sizes(
    f: nd2.ND2File, loops: Sequence[Any]
) -> tuple[float | None, float | None, float | None]:
    """z, y, x in µm. nd2's ``voxel_size()`` reports 1.0 for an uncalibrated axis (a 2-D
    image's Z): only axes the file marks as calibrated count, and Z falls back to the Z
    loop's step."""
    x = y = z = None
    try:
        volume = f.metadata.channels[0].volume if f.metadata.channels else None
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        volume = None
    if volume is not None:
        calibrated = tuple(volume.axesCalibrated or (False, False, False))
        cal = tuple(volume.axesCalibration or (None, None, None))
        x = _positive(cal[0]) if calibrated[0] else None
        y = _positive(cal[1]) if calibrated[1] else None
        z = _positive(cal[2]) if calibrated[2] else None
    zloop = next((lp for lp in loops if lp.type == "ZStackLoop" and lp.count > 1), None)
    if z is None and zloop is not None:
        z = _positive(zloop.parameters.stepUm)
    if zloop is None:
        z = None  # a single plane has no Z spacing
    return (z, y, x)


def _frame_times(f: nd2.ND2File, n_frames: int) -> tuple[float, ...] | None:
    """Each frame's acquisition time in seconds, from the file's recorded frame times (the
    "Time [s]" column of ``ND2File.events()``, NIS' ``AcqTimesCache``), falling back to the
    per-frame metadata; None when the file records none."""
    times = [math.nan] * n_frames
    try:
        records = f.events(orient="records")
    except (NotImplementedError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        records = []  # legacy files have no event table
    for rec in records:
        index, seconds = rec.get("Index"), rec.get("Time [s]")
        if (
            isinstance(index, (int, float))
            and isinstance(seconds, (int, float))
            and math.isfinite(index)
            and 0 <= int(index) < n_frames
        ):
            times[int(index)] = float(seconds)
    if any(math.isfinite(t) for t in times):
        return tuple(times)
    try:  # no time table: read the per-frame metadata chunks (no pixels)
        for i in range(n_frames):
            frame = f.frame_metadata(i)
            channels = getattr(frame, "channels", None)
            if channels:
                times[i] = float(channels[0].time.relativeTimeMs) / 1000.0
    except (NotImplementedError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return tuple(times) if any(math.isfinite(t) for t in times) else None


def _loop_interval(loops: Sequence[Any]) -> float | None:
    """The nominal frame interval in seconds from the time loop: its period, or the measured
    average period NIS stores when the period is 0 ("as fast as possible")."""
    loop = next((lp for lp in loops if lp.type in ("TimeLoop", "NETimeLoop")), None)
    if loop is None:
        return None
    params = loop.parameters
    phases = list(getattr(params, "periods", None) or [params])
    values = set()
    for phase in phases:
        ms = float(phase.periodMs or 0)
        if ms <= 0 and phase.periodDiff is not None:
            ms = float(phase.periodDiff.avg or 0)
        if ms > 0:
            values.add(round(ms, 6))
    # Phases with different periods have no single interval.
    return values.pop() / 1000.0 if len(values) == 1 else None


def _bad_frames(f: nd2.ND2File, n_frames: int, file_size: int) -> frozenset[int]:
    """Frames the chunk map lacks or places past the end of the file. nd2 serves these as
    zeros without a word; tlcore needs to know. Uses the modern reader's chunk map (the only
    place nd2 exposes it); legacy files are not checked."""
    if f.is_legacy:  # JPEG 2000 files index frames differently
        return frozenset()
    chunkmap = getattr(getattr(f, "_rdr", None), "chunkmap", None)
    if not isinstance(chunkmap, Mapping):
        return frozenset()
    attrs = f.attributes
    frame_bytes = int(attrs.heightPx) * int(attrs.widthBytes or 0)
    bad = set()
    for i in range(n_frames):
        entry = chunkmap.get(f"ImageDataSeq|{i}!".encode())
        if entry is None:
            bad.add(i)
            continue
        offset, size = int(entry[0]), int(entry[1])
        if attrs.compressionType is None:
            end = offset + _FRAME_DATA_OFFSET + frame_bytes
        else:
            end = offset + size
        if end > file_size:
            bad.add(i)
    return frozenset(bad)
