"""The kit's file-access counting, on real files: opens with their modes, writes of every kind,
memory maps, bytes read, and fingerprints that see any change."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from tlcore.testing import iowatch


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    folder = tmp_path / "sample"
    folder.mkdir()
    np.save(folder / "t0000.npy", np.arange(64 * 1024, dtype="uint16"))
    return folder


def test_reads_are_counted_and_not_writes(sample: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.bin"
    other.write_bytes(b"x" * 10)
    with iowatch.watch(sample) as seen:
        data = (sample / "t0000.npy").read_bytes()
        other.read_bytes()
    assert seen.opened == [str(sample / "t0000.npy")]  # only under the watched folder
    assert seen.writes == []
    if seen.bytes_read is not None:  # Linux: /proc/self/io
        assert len(data) <= seen.bytes_read < len(data) + 8 * 1024


@pytest.mark.parametrize("how", ["open r+", "os.open O_RDWR", "memmap r+", "utime", "create"])
def test_every_kind_of_write_is_seen(sample: Path, how: str) -> None:
    path = sample / "t0000.npy"
    with iowatch.watch(sample) as seen:
        if how == "open r+":
            open(path, "r+b").close()
        elif how == "os.open O_RDWR":
            os.close(os.open(path, os.O_RDWR))
        elif how == "memmap r+":
            np.load(path, mmap_mode="r+").flush()
        elif how == "utime":
            os.utime(path)
        else:
            (sample / "new.txt").write_text("x")
    assert seen.writes, f"{how} was not seen: {seen.accesses}"
    assert all(a.path.startswith(str(sample)) for a in seen.writes)


def test_read_only_memory_maps_are_recorded(sample: Path) -> None:
    with iowatch.watch(sample) as seen:
        frame = np.load(sample / "t0000.npy", mmap_mode="r")
        int(frame[-1])
    assert [a.mode for a in seen.mapped] == ["read"] and seen.writes == []
    with open(sample / "t0000.npy", "rb") as fh, iowatch.watch(sample) as seen:
        mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ).close()
    assert len(seen.mapped) == 1


def test_fingerprint_sees_a_rewrite_with_the_old_time(sample: Path) -> None:
    path = sample / "t0000.npy"
    before = iowatch.fingerprint([sample])
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the writer hides the mtime...
    changes = iowatch.describe_changes(before, iowatch.fingerprint([sample]))
    assert changes and "ctime" in changes[0] and "content" in changes[0]  # ...not the ctime


def test_nested_watches_each_see_their_own(sample: Path) -> None:
    with iowatch.watch(sample) as outer:
        with iowatch.watch(sample) as inner:
            (sample / "t0000.npy").read_bytes()
        (sample / "t0000.npy").read_bytes()
    assert len(inner.opened) == 1 and len(outer.opened) == 2
