"""Small real reader plugins for the registry tests: each is an ordinary pluggy plugin object
that serves in-memory numpy data through tlcore's ArrayReader, no mocking involved."""

from __future__ import annotations

from typing import Any

import numpy as np

from tlcore import LazyImage, Level, PixelSizes, ReaderInfo, Source, TimeAxis, hookimpl
from tlcore.lazy import ArrayReader, Region, as_dask


class NumpyArrayReader(ArrayReader):
    def __init__(self, name: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
        super().__init__(data.shape, data.dtype, chunks)
        self.name = name
        self.data = data

    def identity(self) -> tuple[Any, ...]:
        return (self.name,)

    def _open(self) -> np.ndarray:
        return self.data

    def _read(self, handle: np.ndarray, region: Region) -> np.ndarray:
        return np.array(handle[region])


class FakeFormat:
    """Claims ``extensions``; accepts files whose first bytes are ``magic`` (any when None)."""

    def __init__(
        self,
        name: str,
        extensions: tuple[str, ...],
        priority: int = 0,
        magic: bytes | None = None,
        verdict: Any = "sniff",
        shape: tuple[int, int, int, int, int] = (4, 2, 3, 16, 16),
    ) -> None:
        self.name = name
        self.info = ReaderInfo(name, extensions, priority)
        self.magic = magic
        self.verdict = verdict
        self.data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
        self.calls: list[str] = []

    @hookimpl
    def reader_info(self) -> ReaderInfo:
        return self.info

    @hookimpl
    def can_open(self, source: Source) -> bool | str | None:
        self.calls.append("can_open")
        if self.verdict != "sniff":
            return self.verdict  # type: ignore[no-any-return]
        if self.magic is None:
            return None
        head = source.read_bytes(0, len(self.magic))
        return True if head == self.magic else f"no {self.magic!r} header"

    @hookimpl
    def list_scenes(self, source: Source) -> list[str]:
        return ["first", "second"]

    @hookimpl
    def levels(self, source: Source, scene: int) -> list[Level]:
        return [Level(0, self.data.shape)]  # type: ignore[arg-type]

    @hookimpl
    def time_axis(self, source: Source, scene: int) -> TimeAxis:
        return TimeAxis(self.data.shape[0], interval=1.5)

    @hookimpl
    def open_lazy(self, source: Source, scene: int, level: int) -> LazyImage:
        self.calls.append(f"open_lazy:{scene}")
        reader = NumpyArrayReader(f"{self.name}:{source.uri}:{scene}", self.data, (1, 1, 3, 8, 8))
        return LazyImage(
            data=as_dask(reader),
            scene=["first", "second"][scene],
            level=level,
            time_axis=TimeAxis(self.data.shape[0], interval=1.5),
            pixel_sizes=PixelSizes(None, 0.5, 0.5),
            channel_names=("a", "b"),
        )


class Broken(FakeFormat):
    """Accepts everything and then fails to read, as a buggy native library would."""

    @hookimpl
    def open_lazy(self, source: Source, scene: int, level: int) -> LazyImage:
        raise RuntimeError("native library exploded")
