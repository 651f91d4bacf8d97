"""Memory of a whole process tree (a training process and its DataLoader workers), measured
from ``/proc``: resident set size (RSS) and proportional set size (PSS, shared pages counted
once across the tree, which is what the machine really spends). Linux only; elsewhere the
figures are None."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_PROC = Path("/proc")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every process's ``stat`` (field 4 is the parent)."""
    out = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces: parse after its closing parenthesis.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def tree(pid: int | None = None) -> list[int]:
    """``pid`` (default: this process) and all its descendants."""
    root = os.getpid() if pid is None else pid
    found, todo = [root], [root]
    while todo:
        kids = _children(todo.pop())
        found.extend(kids)
        todo.extend(kids)
    return found


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes; (0, 0) when it has gone."""
    rss = pss = 0
    try:
        for line in (_PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


@dataclass
class TreeMemory:
    """Peak RSS and PSS of a process tree, sampled every ``interval`` seconds while the
    ``with`` block runs (the sum over the tree at each sample, then the maximum)."""

    interval: float = 0.05
    peak_rss: int | None = None
    peak_pss: int | None = None
    samples: int = 0

    def sample(self) -> tuple[int, int]:
        total_rss = total_pss = 0
        for pid in tree():
            rss, pss = _rollup(pid)
            total_rss += rss
            total_pss += pss
        self.peak_rss = max(self.peak_rss or 0, total_rss)
        self.peak_pss = max(self.peak_pss or 0, total_pss)
        self.samples += 1
        return total_rss, total_pss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        if not (_PROC / "self" / "smaps_rollup").exists():
            return self
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tlcore-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
            self.sample()
