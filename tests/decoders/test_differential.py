"""tlcore's zarr decoder against zarr-python on random arrays, intact and damaged.

Random stores (ranks 1-6, every supported dtype in both byte orders, v2 and v3 layouts, zstd,
blosc, gzip and zlib with their options, uncompressed, fill values, missing chunks, chunks
written by other encoders), then chunk files damaged the ways users meet (empty, truncated, a
bit flipped early or late, a folder in place, garbage, a reserved gzip header flag), and
stores rewritten in place with another layout. Every read is compared under the rule:

* zarr returns data: tlcore returns the same bytes;
* zarr raises: tlcore raises :class:`~tlcore.decoders.zarrfast.ChunkReadError` naming the
  chunk file, the array and the store;
* the one allowed difference: a blosc chunk whose header promises more bytes than the file
  holds (empty, truncated), where c-blosc under zarr reads past the buffer (garbage, no
  error): tlcore must raise. zarr is not asked to read those.

With partial reads on and off, one and three threads, and again in a forked child after the
parent used the decoder. A few dozen arrays in ``make test``, hundreds more in ``make test-slow``.
"""

from __future__ import annotations

import gzip
import itertools
import os
import pickle
import shutil
import signal
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

from tlcore import zarrfast

DTYPES = ["bool", "i1", "u1", "<i2", ">i2", "<u2", ">u2", "<i4", ">u4", "<i8", ">i8", "<f2",
          ">f4", "<f4", "<f8", ">f8", "<c8", ">c16"]  # fmt: skip
DAMAGE = ["empty", "truncate", "flip-early", "flip-late", "folder", "garbage", "append",
          "gzip-flag"]  # fmt: skip


@dataclass
class Case:
    array: zarr.Array[Any]
    codec: str | None  # zstd, blosc, gzip, zlib, None
    damaged: dict[str, str]  # chunk file -> how it was damaged


def _values(shape: tuple[int, ...], dtype: np.dtype[Any], rng: np.random.Generator) -> np.ndarray:
    base = rng.standard_normal(shape) * 30 + np.arange(shape[-1]) % 9
    if dtype.kind == "b":
        return base > 0
    if dtype.kind == "c":
        return (base + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind == "f":
        return base.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(base, info.min, info.max).astype(dtype)


def _fill(dtype: np.dtype[Any], rng: np.random.Generator, fmt: int) -> Any:
    if dtype.kind == "b":
        return bool(rng.integers(2))
    choices: list[Any] = [0, 1, 7]
    if dtype.kind in "fc":
        choices += [float("nan"), float("inf"), -2.5]
    if dtype.kind == "i":
        choices.append(-1)
    if fmt == 2:
        choices.append(None)
    return choices[int(rng.integers(len(choices)))]


def _v3_compressor(rng: np.random.Generator) -> tuple[str | None, Any]:
    pick = int(rng.integers(4))
    if pick == 0:
        return "zstd", ZstdCodec(level=int(rng.integers(-1, 8)), checksum=bool(rng.integers(2)))
    if pick == 1:
        return "blosc", BloscCodec(
            cname=str(rng.choice(["lz4", "lz4hc", "blosclz", "zstd", "zlib"])),
            clevel=int(rng.integers(0, 9)),
            shuffle=str(rng.choice(["noshuffle", "shuffle", "bitshuffle"])),
            blocksize=int(rng.choice([0, 256, 4096])),
        )
    if pick == 2:
        return "gzip", GzipCodec(level=int(rng.integers(0, 9)))
    return None, None


def _v2_compressor(rng: np.random.Generator) -> tuple[str | None, Any]:
    pick = int(rng.integers(5))
    if pick == 0:
        return "zstd", numcodecs.Zstd(level=int(rng.integers(1, 8)), checksum=bool(rng.integers(2)))
    if pick == 1:
        return "blosc", numcodecs.Blosc(
            cname=str(rng.choice(["lz4", "zstd", "blosclz", "zlib"])),
            clevel=int(rng.integers(0, 9)),
            shuffle=int(rng.integers(-1, 3)),
        )
    if pick == 2:
        return "gzip", numcodecs.GZip(int(rng.integers(0, 9)))
    if pick == 3:
        return "zlib", numcodecs.Zlib(int(rng.integers(0, 9)))
    return None, None


def _create(path: Path, rng: np.random.Generator) -> tuple[zarr.Array[Any], str | None]:
    """A new random array at ``path`` (anything there is replaced), its data written."""
    shutil.rmtree(path, ignore_errors=True)
    ndim = int(rng.integers(1, 7))
    shape = tuple(int(s) for s in rng.integers(1, 40 if ndim <= 2 else 9, ndim))
    chunks = tuple(int(rng.integers(1, s + 3)) for s in shape)
    dtype = np.dtype(str(rng.choice(DTYPES)))
    fmt = int(rng.choice([2, 3]))
    fill = _fill(dtype, rng, fmt)
    if fmt == 3:
        codec, compressor = _v3_compressor(rng)
        serializer: Any = "auto"
        if dtype.itemsize > 1:
            serializer = BytesCodec(endian=str(rng.choice(["little", "big"])))
            dtype = dtype.newbyteorder("=")
        array = zarr.create_array(
            path, shape=shape, chunks=chunks, dtype=dtype, compressors=compressor,
            serializer=serializer, fill_value=fill, zarr_format=3,
            chunk_key_encoding={"name": str(rng.choice(["default", "v2"])),
                                "separator": str(rng.choice(["/", "."]))},
        )  # fmt: skip
    else:
        codec, compressor = _v2_compressor(rng)
        array = zarr.create_array(
            path, shape=shape, chunks=chunks, dtype=dtype, compressors=compressor,
            fill_value=fill, zarr_format=2, order=str(rng.choice(["C", "F"])),
            chunk_key_encoding={"name": "v2", "separator": str(rng.choice(["/", "."]))},
        )  # fmt: skip
    data = _values(shape, array.dtype, rng)
    if rng.random() < 0.3:  # some chunks all fill value: zarr may not write them
        data[tuple(slice(0, c) for c in chunks)] = 0 if fill is None else fill
    array[...] = data
    return array, codec


def _chunk_files(array: zarr.Array[Any]) -> list[Path]:
    folder = Path(str(array.store.root)) / array.path
    meta = {".zarray", ".zattrs", ".zgroup", "zarr.json"}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in meta)


def _other_encoder(file: Path, codec: str, rng: np.random.Generator) -> None:
    """Re-encode one intact chunk as another writer would: gzip with a file name and mtime,
    zlib at another level, blosc with another compressor, zstd with a checksum."""
    raw = {"zstd": numcodecs.Zstd(), "blosc": numcodecs.Blosc(), "gzip": numcodecs.GZip(),
           "zlib": numcodecs.Zlib()}[codec].decode(file.read_bytes())  # fmt: skip
    if codec == "gzip":
        encoded = gzip.compress(bytes(raw), compresslevel=9, mtime=12345)
        # Python's gzip writes no name: add FNAME by hand, as the gzip tool does.
        encoded = (
            encoded[:3] + bytes([encoded[3] | 0x08]) + encoded[4:10] + b"x.raw\0" + encoded[10:]
        )
    elif codec == "zlib":
        encoded = zlib.compress(bytes(raw), 1)
    elif codec == "blosc":
        typesize = int(file.read_bytes()[3])
        encoded = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=2, typesize=typesize).encode(raw)
    else:
        encoded = numcodecs.Zstd(level=1, checksum=True).encode(raw)
    file.write_bytes(encoded)


def _damage(file: Path, how: str, codec: str | None, rng: np.random.Generator) -> str:
    data = bytearray(file.read_bytes())
    if how == "gzip-flag" and codec != "gzip":
        how = "flip-late"
    if how == "folder":
        file.unlink()
        file.mkdir()
        return how
    if how == "empty":
        data = bytearray()
    elif how == "truncate":
        data = data[: int(rng.integers(0, max(1, len(data))))]
    elif how in ("flip-early", "flip-late") and data:
        n = len(data)
        at = (
            int(rng.integers(0, max(1, n // 8)))
            if how == "flip-early"
            else n - 1 - int(rng.integers(0, max(1, n // 8)))
        )
        data[at] ^= 1 << int(rng.integers(8))
    elif how == "garbage":
        data = bytearray(rng.integers(0, 256, max(1, len(data)), dtype=np.uint8).tobytes())
    elif how == "append":
        data += b"\0junk"
    elif how == "gzip-flag":
        data[3] |= 0x20 << int(rng.integers(3))  # a reserved FLG bit (5, 6 or 7)
    file.write_bytes(bytes(data))
    return how


def _case(path: Path, rng: np.random.Generator, damage: bool) -> Case:
    array, codec = _create(path, rng)
    files = _chunk_files(array)
    damaged: dict[str, str] = {}
    if codec is not None and files and rng.random() < 0.3:
        _other_encoder(files[int(rng.integers(len(files)))], codec, rng)
    if damage and files:
        for i in rng.choice(
            len(files), size=min(len(files), int(rng.integers(1, 3))), replace=False
        ):
            how = _damage(files[int(i)], str(rng.choice(DAMAGE)), codec, rng)
            damaged[str(files[int(i)])] = how
    if files and rng.random() < 0.3:
        victim = files[int(rng.integers(len(files)))]
        if str(victim) not in damaged:
            victim.unlink()  # a missing chunk
    return Case(zarr.open_array(path, mode="r"), codec, damaged)


def _keys(case: Case, rng: np.random.Generator, n: int) -> list[tuple[slice, ...]]:
    shape = case.array.shape
    keys = [tuple(slice(0, s) for s in shape)]
    for _ in range(n):
        keys.append(tuple(slice(int(a), int(b) + 1)
                          for a, b in (sorted(rng.integers(0, s, 2)) for s in shape)))  # fmt: skip
    return keys


def _untrusted_blosc(case: Case, key: tuple[slice, ...]) -> bool:
    """Whether ``key`` touches a damaged blosc chunk whose header promises more bytes than the
    file holds: c-blosc (under zarr) would read past the buffer."""
    if case.codec != "blosc":
        return False
    touched = _touched(case.array, key)
    for file, how in case.damaged.items():
        path = Path(file)
        if how == "folder" or not path.is_file() or file not in touched:
            continue
        data = path.read_bytes()
        if len(data) < 16 or int.from_bytes(data[12:16], "little") > len(data):
            return True
    return False


def _touched(array: zarr.Array[Any], key: tuple[slice, ...]) -> set[str]:
    """The chunk files (existing or not) the region ``key`` touches."""
    folder = Path(str(array.store.root)) / array.path
    chunks = array.metadata.chunks if array.metadata.zarr_format == 2 else array.chunks
    ranges = [range(s.start // c, (s.stop - 1) // c + 1) for s, c in zip(key, chunks)]
    return {str(folder / array.metadata.encode_chunk_key(coords))
            for coords in itertools.product(*ranges)}  # fmt: skip


def _zarr_outcome(case: Case, key: tuple[slice, ...]) -> Any:
    """zarr's answer: the array, or the exception type's name; None when zarr is not asked."""
    if _untrusted_blosc(case, key):
        return None
    try:
        return np.asarray(case.array[key])
    except Exception as exc:
        return type(exc).__name__


def _check(
    case: Case, key: tuple[slice, ...], want: Any, partial: bool, threads: int
) -> str | None:
    """A description of the rule broken, or None."""
    fast = zarrfast.open_array(case.array, threads=threads, partial=partial)
    if fast is None:
        return f"refused: {zarrfast.unsupported_reason(case.array)}"
    where = (f"{case.array.store.root} codec={case.codec} damaged={case.damaged} key={key} "
             f"partial={partial} threads={threads}")  # fmt: skip
    try:
        got = fast.read(key)
    except zarrfast.ChunkReadError as exc:
        text = str(exc)
        if exc.path not in case.damaged and not Path(exc.path).exists():
            return f"error names {exc.path}, not a chunk file: {where}"
        if str(case.array.store.root) not in text or f"'{case.array.path or '/'}'" not in text:
            return f"error does not name the array and store ({text}): {where}"
        if isinstance(want, np.ndarray):
            return f"tlcore raised ({text}) where zarr returned data: {where}"
        return None
    except Exception as exc:
        return f"tlcore raised {type(exc).__name__}: {exc}, not ChunkReadError: {where}"
    if want is None:
        return f"tlcore returned data from a blosc chunk whose header overruns the file: {where}"
    if isinstance(want, str):
        return f"tlcore returned data where zarr raised {want}: {where}"
    if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != want.tobytes():
        return f"tlcore's bytes differ from zarr's: {where}"
    return None


def _run(cases: list[tuple[Case, list[tuple[tuple[slice, ...], Any]]]]) -> list[str]:
    broken = []
    for case, expected in cases:
        for key, want in expected:
            for partial in (True, False):
                for threads in (1, 3):
                    found = _check(case, key, want, partial, threads)
                    if found:
                        broken.append(found)
    return broken


def _in_forked_child(cases: list[tuple[Case, list[tuple[tuple[slice, ...], Any]]]]) -> list[str]:
    """:func:`_run` in a forked child (after this process used the decoder's threads)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports and leaves at once, whatever happens
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as out:
                pickle.dump(_run(cases), out)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the forked child failed"
    result: list[str] = pickle.loads(data)
    return result


@pytest.mark.parametrize(
    ("seed", "arrays"),
    [(0, 60), pytest.param(1, 1500, marks=pytest.mark.slow)],
)
def test_tlcore_follows_zarr_on_intact_and_damaged_stores(
    tmp_path: Path, seed: int, arrays: int
) -> None:
    rng = np.random.default_rng(seed)
    cases = []
    outcomes = {"data": 0, "zarr raised": 0, "untrusted blosc": 0}
    for n in range(arrays):
        case = _case(tmp_path / f"a{n}.zarr", rng, damage=n % 3 != 0)
        expected = []
        for key in _keys(case, rng, 2):
            want = _zarr_outcome(case, key)
            outcomes[
                "data"
                if isinstance(want, np.ndarray)
                else "zarr raised"
                if want
                else "untrusted blosc"
            ] += 1
            expected.append((key, want))
        cases.append((case, expected))
    broken = _run(cases)
    assert not broken, f"{len(broken)} reads break the rule, first ones:\n" + "\n".join(broken[:5])
    # Every kind of outcome met, or the test proves less than it says.
    assert all(outcomes.values()), outcomes
    broken = _in_forked_child(cases[: max(10, arrays // 10)])
    assert not broken, "in a forked child:\n" + "\n".join(broken[:5])


@pytest.mark.parametrize(
    ("seed", "rounds"), [(2, 15), pytest.param(3, 300, marks=pytest.mark.slow)]
)
def test_a_store_rewritten_in_place_is_read_as_it_is_now(
    tmp_path: Path, seed: int, rounds: int
) -> None:
    """The same path rewritten with another layout, reopened: tlcore reads the new one, in
    this process and in a child forked after the rewrite."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "a.zarr"
    for _ in range(rounds):
        before = _case(path, rng, damage=False)
        key = _keys(before, rng, 1)[-1]
        assert not _run([(before, [(key, _zarr_outcome(before, key))])])
        after = _case(path, rng, damage=bool(rng.integers(2)))
        expected = [(k, _zarr_outcome(after, k)) for k in _keys(after, rng, 2)]
        broken = _run([(after, expected)])
        assert not broken, "\n".join(broken[:5])
    assert not _in_forked_child([(after, expected)])
