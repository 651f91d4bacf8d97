"""Open ND2 files: opening with clear errors, and handing the file that parsed the metadata
over to the first reader of that file in the same process.

Why the hand-over: nd2 decodes the file's whole image metadata block before it serves its
first frame (tens of milliseconds for a small file). Parsing the metadata already paid that, so
the first array reader of a file takes that open file instead of opening and decoding again.
At most a few unclaimed files are kept open; they are closed when pushed out and at exit.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict

import nd2

from tlcore import ReaderError

#: Unclaimed open files kept for a later reader (per process).
SPARE_LIMIT = 4

_Key = tuple[str, int, int, int]  # path, size, mtime_ns, pid
_spares: OrderedDict[_Key, nd2.ND2File] = OrderedDict()
_lock = threading.Lock()


def damaged_file_error(path: str, exc: BaseException) -> ReaderError:
    return ReaderError(
        f"{path}: cannot read the ND2 file structure ({type(exc).__name__}: {exc}). The file "
        "is truncated or damaged (an ND2 file keeps its index at the end, so an incomplete "
        "copy loses it). Copy it again from the original."
    )


def open_file(path: str) -> nd2.ND2File:
    """Open ``path`` read-only with nd2, turning a broken file into a clear error."""
    try:
        return nd2.ND2File(path)
    except (FileNotFoundError, PermissionError):
        raise
    except (ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise damaged_file_error(path, exc) from exc


def _key(path: str, size: int, mtime_ns: int) -> _Key:
    return (path, size, mtime_ns, os.getpid())


def keep_spare(path: str, size: int, mtime_ns: int, handle: nd2.ND2File) -> None:
    """Keep ``handle`` (open, metadata decoded) for the next :func:`take` of this file."""
    evicted = []
    with _lock:
        old = _spares.pop(_key(path, size, mtime_ns), None)
        if old is not None:
            evicted.append(old)
        _spares[_key(path, size, mtime_ns)] = handle
        while len(_spares) > SPARE_LIMIT:
            evicted.append(_spares.popitem(last=False)[1])
    for h in evicted:
        h.close()


def take(path: str) -> nd2.ND2File:
    """An open ND2 file for the caller to own (and close): the spare one left by the metadata
    parse of this same file in this process when there is one, else a new one."""
    st = os.stat(path)
    with _lock:
        handle = _spares.pop(_key(path, st.st_size, st.st_mtime_ns), None)
    if handle is not None and not handle.closed:
        return handle
    return open_file(path)


@atexit.register
def close_spares() -> None:
    with _lock:
        handles = list(_spares.values())
        _spares.clear()
    for h in handles:
        h.close()
