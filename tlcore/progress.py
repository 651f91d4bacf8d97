"""Progress bars on stderr for the long steps (validation, cache downloads, benchmarks).

A bar is drawn only when its stream (stderr by default) is a terminal: piped into a file, a
log or a CI job, it prints nothing, so output stays clean. ``TLCORE_PROGRESS=0`` turns bars off
in a terminal too. Standard library only; thread-safe (``validate`` updates from a pool).

    from tlcore.progress import Bar, track

    with Bar("checking", total=len(files)) as bar:
        for f in files:
            check(f)
            bar.update()

    for crop in track(crops, "reading crops"):
        ...

``Bar(..., unit="B")`` shows sizes (``12.0/48.0 MiB``) and a rate; ``delay=0.5`` draws only
once the step has lasted half a second, for steps that are usually instant (a cached file).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from types import TracebackType
from typing import IO, TypeVar

__all__ = ["ENV", "Bar", "enabled", "track"]

#: Environment variable: ``0`` (or ``false``, ``no``, ``off``) disables every bar.
ENV = "TLCORE_PROGRESS"

T = TypeVar("T")


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether bars are drawn on ``stream`` (default stderr): a terminal, and not turned off
    with ``TLCORE_PROGRESS=0``."""
    if os.environ.get(ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


_stream_enabled = enabled


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Bar:
    """One progress bar: ``label done/total [#####.....] 40%``.

    Args:
        label: what is in progress (``"checking"``, ``"fetching movie.nd2"``).
        total: the count at the end; ``None`` when unknown (then only the count is shown).
            :meth:`set_total` changes it later.
        unit: ``"B"`` formats counts as sizes and adds a rate; any other text is appended to
            the counts (``"crops"``).
        stream: where to draw; default ``sys.stderr`` at the time of drawing.
        enabled: force drawing on or off; default :func:`enabled` of the stream.
        delay: seconds before the first draw; a step finished sooner prints nothing.
        min_interval: least seconds between two redraws (the last one is always drawn).
        width: characters of the bar itself.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: IO[str] | None = None,
        enabled: bool | None = None,
        delay: float = 0.0,
        min_interval: float = 0.1,
        width: int = 30,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream
        self._enabled = _stream_enabled(stream) if enabled is None else enabled
        self._delay = delay
        self._min_interval = min_interval
        self._width = width
        self._start = time.monotonic()
        self._last_draw = -1.0
        self._drawn = False
        self._last_text = ""
        self._closed = False
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether this bar draws anything at all."""
        return self._enabled

    def update(self, n: int = 1) -> None:
        """Advance by ``n``."""
        with self._lock:
            self.done += n
            self._maybe_draw()

    def set(self, done: int) -> None:
        """Set the count to ``done``."""
        with self._lock:
            self.done = done
            self._maybe_draw()

    def set_total(self, total: int | None) -> None:
        """Change the total (once a download knows its size)."""
        with self._lock:
            self.total = total

    def __call__(self, done: int, total: int) -> None:
        """The ``(done, total)`` callback form that ``validate_rows(progress=...)`` takes."""
        with self._lock:
            self.done, self.total = done, total
            self._maybe_draw()

    def close(self) -> None:
        """Draw the final state and end the line (only if something was drawn)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._enabled and (self._drawn or self._elapsed() >= self._delay):
                self._draw(end="\n", again=False)

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def render(self) -> str:
        """The bar's text (without the carriage return), drawn or not."""
        if self.unit == "B":
            count = _size(self.done) + ("" if self.total is None else f"/{_size(self.total)}")
            elapsed = self._elapsed()
            if elapsed > 0 and self.done:
                count += f" {_size(self.done / elapsed)}/s"
        else:
            count = str(self.done) + ("" if self.total is None else f"/{self.total}")
            if self.unit:
                count += f" {self.unit}"
        if not self.total:
            return f"{self.label} {count}"
        fraction = min(max(self.done / self.total, 0.0), 1.0)
        filled = int(self._width * fraction)
        bar = "#" * filled + "." * (self._width - filled)
        return f"{self.label} {count} [{bar}] {fraction * 100:3.0f}%"

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    def _maybe_draw(self) -> None:
        if not self._enabled or self._closed:
            return
        now = self._elapsed()
        if now < self._delay:
            return
        finished = self.total is not None and self.done >= self.total
        if finished or now - self._last_draw >= self._min_interval:
            self._last_draw = now
            self._draw(end="")

    def _draw(self, end: str, again: bool = True) -> None:
        stream = sys.stderr if self._stream is None else self._stream
        text = self.render()
        try:
            if not again and text == self._last_text:
                stream.write(end)  # already on screen
            else:
                # \r back to the line's start, the text, then clear the rest of the line.
                stream.write(f"\r{text}\x1b[K{end}")
            stream.flush()
        except (OSError, ValueError):  # a closed or broken terminal: never fail the work
            self._enabled = False
            return
        self._drawn = True
        self._last_text = text


def track(
    iterable: Iterable[T],
    label: str,
    total: int | None = None,
    *,
    unit: str = "",
    stream: IO[str] | None = None,
    enabled: bool | None = None,
    delay: float = 0.0,
) -> Iterator[T]:
    """Yield from ``iterable`` with a :class:`Bar` advancing per item (``total`` defaults to
    ``len(iterable)`` when it has one; the other arguments are :class:`Bar`'s)."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    with Bar(label, total, unit=unit, stream=stream, enabled=enabled, delay=delay) as bar:
        for item in iterable:
            yield item
            bar.update()
