"""What a piece of code did to the files under some folders: which it opened and how, which it
memory-mapped, and how many bytes the process read meanwhile.

A real measurement, no patching: opens come from Python's audit hooks (``open``, ``os.open``,
``mmap``, and the calls that rename, remove, truncate or re-date a file), bytes from the
kernel's per-process counter ``rchar`` in ``/proc/self/io`` (every ``read``-like system call,
page cache included). Limits, said plainly so a plugin author knows what is not seen:

* files opened by native code (a C++ library calling ``fopen``) raise no audit event; the
  fingerprint check (:func:`fingerprint`) still sees any byte or time they change;
* reads through a memory map are page faults, not system calls: they do not count as bytes
  (the mapping itself is recorded, with its access mode);
* ``rchar`` is process-wide: imports and other threads add to it, so measure a warmed-up call;
* without ``/proc/self/io`` (not Linux) :attr:`Watch.bytes_read` is None.

``sys.addaudithook`` cannot be undone, so one hook serves the process and dispatches to the
watches that are active.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
#: Audit events that change a file without opening it for writing (first argument: the path).
_CHANGE_EVENTS = frozenset(
    {"os.truncate", "os.utime", "os.remove", "os.rename", "os.rmdir", "os.chmod", "os.chown",
     "shutil.rmtree", "shutil.move", "os.link", "os.symlink"}
)  # fmt: skip


@dataclass(frozen=True)
class Access:
    """One audited access to a watched path."""

    path: str
    event: str  # "open", "mmap" or a change event such as "os.utime"
    mode: str  # the open mode ("r", "r+", "w"...), the mmap access, or "" for change events
    writes: bool  # opened, mapped or changed for writing

    def __str__(self) -> str:
        how = f"mode {self.mode!r}" if self.mode else self.event
        return f"{self.event} {self.path} ({how}{', WRITABLE' if self.writes else ''})"


@dataclass(eq=False)  # watches are told apart by identity: two may hold the same events
class Watch:
    """What happened under ``roots`` while the watch was active."""

    roots: tuple[str, ...]
    accesses: list[Access] = field(default_factory=list)
    bytes_read: int | None = None

    def covers(self, path: str) -> bool:
        return any(path == r.rstrip(os.sep) or path.startswith(r) for r in self.roots)

    @property
    def opened(self) -> list[str]:
        """Paths opened (read or write), in order, repeats included."""
        return [a.path for a in self.accesses if a.event == "open"]

    @property
    def writes(self) -> list[Access]:
        return [a for a in self.accesses if a.writes]

    @property
    def mapped(self) -> list[Access]:
        return [a for a in self.accesses if a.event == "mmap"]


class _Dispatcher:
    """The one audit hook of the process; forwards events to the active watches."""

    def __init__(self) -> None:
        self.watches: list[Watch] = []
        self.lock = threading.Lock()
        self.local = threading.local()
        sys.addaudithook(self.hook)

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if not self.watches or getattr(self.local, "busy", False):
            return
        if event != "open" and event != "mmap.__new__" and event not in _CHANGE_EVENTS:
            return
        self.local.busy = True  # os.readlink below must not re-enter
        try:
            access = _describe(event, args)
            if access is not None:
                for watch in list(self.watches):
                    if watch.covers(access.path):
                        watch.accesses.append(access)
        finally:
            self.local.busy = False


def _describe(event: str, args: tuple[object, ...]) -> Access | None:
    if event == "mmap.__new__":
        fileno, _length, access, _offset = args
        if not isinstance(fileno, int) or fileno < 0:
            return None  # an anonymous map
        try:
            path = os.readlink(f"/proc/self/fd/{fileno}")
        except OSError:
            return None
        names = {mmap.ACCESS_READ: "read", mmap.ACCESS_WRITE: "write", mmap.ACCESS_COPY: "copy"}
        mode = names.get(int(access), "default") if isinstance(access, int) else "?"
        return Access(path, "mmap", mode, mode == "write")
    # os.link and os.symlink audit (source, destination): only the destination is written.
    target = args[1] if event in ("os.link", "os.symlink") and len(args) > 1 else None
    target = target if target is not None else (args[0] if args else None)
    if isinstance(target, int) or not isinstance(target, (str, bytes, os.PathLike)):
        return None  # an open file descriptor (os.fdopen) was audited when it was opened
    path = os.path.abspath(os.fsdecode(target))
    if event == "open":
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writes = bool(flags & _WRITE_FLAGS) or any(c in mode for c in "wax+")
        return Access(path, "open", mode or f"flags {flags:#o}", writes)
    return Access(path, event, "", True)


_dispatcher: _Dispatcher | None = None
_dispatcher_lock = threading.Lock()


def _get_dispatcher() -> _Dispatcher:
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is None:
            _dispatcher = _Dispatcher()
        return _dispatcher


def read_counter() -> int | None:
    """Bytes this process has read through system calls so far (``rchar``), or None."""
    try:
        with open("/proc/self/io", "rb") as fh:
            for line in fh:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextmanager
def watch(*roots: str | os.PathLike[str]) -> Iterator[Watch]:
    """Record accesses to files under ``roots`` (files or folders) and the bytes read meanwhile.

    ``bytes_read`` is filled in when the block ends; the reading of ``/proc/self/io`` itself
    (about a hundred bytes) is subtracted.
    """
    dispatcher = _get_dispatcher()
    norm = []
    for root in roots:
        path = os.path.abspath(os.fspath(root))
        norm.append(path + os.sep if os.path.isdir(path) else path)
        real = os.path.realpath(path)  # native libraries and mmap report resolved paths
        if real != path:
            norm.append(real + os.sep if os.path.isdir(real) else real)
    result = Watch(tuple(norm))
    with dispatcher.lock:
        dispatcher.watches.append(result)
    start = read_counter()
    probe_cost = 0
    if start is not None:
        again = read_counter()
        probe_cost = (again - start) if again is not None else 0
        start = again
    try:
        yield result
    finally:
        end = read_counter()
        with dispatcher.lock:
            dispatcher.watches.remove(result)
        if start is not None and end is not None:
            result.bytes_read = max(0, end - start - probe_cost)


def files_under(root: str | os.PathLike[str]) -> list[str]:
    """Every regular file of ``root`` (itself when it is a file), sorted."""
    path = os.fspath(root)
    if os.path.isfile(path):
        return [os.path.abspath(path)]
    found: list[str] = []
    for folder, _dirs, files in os.walk(path):
        found.extend(os.path.join(folder, f) for f in files)
    return sorted(os.path.abspath(f) for f in found)


def disk_size(root: str | os.PathLike[str]) -> int:
    """Bytes on disk of a file or of every file in a folder."""
    return sum(os.path.getsize(f) for f in files_under(root))


def fingerprint(
    roots: Iterable[str | os.PathLike[str]], *, content: bool = True
) -> dict[str, tuple[int, int, int, str]]:
    """Size, modification and change time (ns) and, with ``content``, the sha256 of every file
    under ``roots``. The change time moves on any write and cannot be set back by the writer,
    so equal fingerprints mean nothing touched the files."""
    out: dict[str, tuple[int, int, int, str]] = {}
    for root in roots:
        for path in files_under(root):
            st = os.stat(path)
            digest = ""
            if content:
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                digest = h.hexdigest()
            out[path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
    return out


def describe_changes(
    before: dict[str, tuple[int, int, int, str]], after: dict[str, tuple[int, int, int, str]]
) -> list[str]:
    """Human-readable differences between two fingerprints."""
    changes = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a is None:
            changes.append(f"{path}: created")
        elif b is None:
            changes.append(f"{path}: removed")
        elif a != b:
            what = [n for n, x, y in zip(("size", "mtime", "ctime", "content"), a, b) if x != y]
            changes.append(f"{path}: {', '.join(what)} changed")
    return changes
