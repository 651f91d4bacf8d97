"""The remote read path against a real S3-protocol server (moto on loopback) behind
:class:`tlcore.io.relay.Relay`, which counts requests by method and can throttle: one GET per
chunk and no HEAD, throttled and failed requests retried one by one, relative remote paths
normalised."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tlcore
from tlcore.io import remote
from tlcore.io.relay import Relay
from tlcore.io.source import Source, normalise_url
from tlcore.sampling.manifest import read_manifest


@pytest.fixture
def store_url(
    s3_server: dict[str, Any], synthetic_store: Callable[..., Path], s3_new_bucket: str
) -> str:
    import s3fs

    local = synthetic_store(shape=(4, 1, 8, 64, 64), chunks=(1, 1, 8, 32, 32))
    s3fs.S3FileSystem(**s3_server).put(
        str(local), f"{s3_new_bucket}/movie.ome.zarr", recursive=True
    )
    return f"s3://{s3_new_bucket}/movie.ome.zarr"


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}


def test_a_crop_costs_one_get_per_chunk_and_no_head(
    s3_server: dict[str, Any], store_url: str, relay: Relay
) -> None:
    image = tlcore.open_lazy(store_url, storage_options=relay.options(s3_server))
    direct = tlcore.open_lazy(store_url, storage_options=s3_server)
    expected = direct.data[1, :, 2:6, 20:50, 10:40].compute()
    before = relay.snapshot()
    n = len(relay.lines)
    crop = image.data[1, :, 2:6, 20:50, 10:40].compute()  # 2 x 2 chunks of one timepoint
    sent = _delta(relay.snapshot(), before)
    assert np.array_equal(crop, expected)
    assert sent.get("HEAD", 0) == 0
    assert sent.get("GET", 0) == 4, "\n".join(relay.lines[n:])


def test_throttled_reads_are_retried_and_give_the_right_pixels(
    s3_server: dict[str, Any], store_url: str
) -> None:
    expected = tlcore.open_lazy(store_url, storage_options=s3_server).data.compute()
    throttling = Relay(str(s3_server["endpoint_url"]), throttle=0.3, seed=3)
    try:
        image = tlcore.open_lazy(store_url, storage_options=throttling.options(s3_server))
        got = image.data.compute()
        assert throttling.throttled > 0  # the relay did throttle, and every read recovered
    finally:
        throttling.stop()
    assert np.array_equal(got, expected)


async def _fails(times: int, exc: Exception, calls: list[int]) -> str:
    calls.append(1)
    if len(calls) <= times:
        raise exc
    return "ok"


def test_retry_async_tells_throttling_from_failures() -> None:
    import asyncio

    slow = OSError("An error occurred (SlowDown): Please reduce your request rate.")
    assert remote.is_throttled(slow) and not remote.is_throttled(ConnectionError("reset"))
    calls: list[int] = []
    # 5 throttled answers exceed the 4 attempts for failures, not the throttling limit
    assert asyncio.run(remote.retry_async(lambda: _fails(5, slow, calls), "x", 4)) == "ok"
    assert len(calls) == 6
    calls.clear()
    with pytest.raises(remote.RemoteError, match="reading s3://b/k failed after 2"):
        asyncio.run(
            remote.retry_async(lambda: _fails(9, ConnectionError(), calls), "reading s3://b/k", 2)
        )
    calls.clear()
    with pytest.raises(FileNotFoundError):  # permanent: raised at once
        asyncio.run(remote.retry_async(lambda: _fails(9, FileNotFoundError(), calls), "x", 4))
    assert len(calls) == 1
    assert all(0 <= remote.jittered(n) <= remote.REQUEST_BACKOFF_CAP_S for n in range(20))


def test_remote_paths_are_normalised() -> None:
    assert normalise_url("s3://b/manifests/../movie.ome.zarr") == "s3://b/movie.ome.zarr"
    assert normalise_url("s3://b/a/./b//c") == "s3://b/a/b/c"
    assert Source.from_any("gs://b/x/../y").uri == "gs://b/y"
    with pytest.raises(ValueError, match="climbs above the bucket"):
        normalise_url("s3://b/../other/x")


def test_a_remote_manifest_may_name_a_parent_folder(
    s3_server: dict[str, Any], store_url: str, s3_new_bucket: str
) -> None:
    import s3fs

    csv = "path,split\n../movie.ome.zarr,train\n./../movie.ome.zarr,val\n"
    s3fs.S3FileSystem(**s3_server).pipe(f"{s3_new_bucket}/manifests/m.csv", csv.encode())
    url = f"s3://{s3_new_bucket}/manifests/m.csv"
    rows = read_manifest(url, storage_options=s3_server)
    assert rows["train"][0].path == rows["val"][0].path == store_url
    report = tlcore.validate_manifest(url, storage_options=s3_server)
    assert report.ok, report


def test_a_remote_tiled_tiff_crop_fetches_its_tiles_in_one_call(
    s3_server: dict[str, Any], s3_new_bucket: str, relay: Relay, tmp_path: Path
) -> None:
    pytest.importorskip("tlcore_tiff")
    import s3fs
    import tifffile

    from tlcore_tiff.array import TiffArrayReader
    from tlcore_tiff.meta import file_meta

    rng = np.random.default_rng(0)
    data = rng.integers(0, 400, (2, 1, 6, 128, 128)).astype(np.uint16)
    local = tmp_path / "m.ome.tif"
    tifffile.imwrite(local, data, ome=True, tile=(32, 32), compression="zlib",
                     metadata={"axes": "TCZYX"})  # fmt: skip
    s3fs.S3FileSystem(**s3_server).put_file(str(local), f"{s3_new_bucket}/m.ome.tif")
    source = Source.from_any(f"s3://{s3_new_bucket}/m.ome.tif", relay.options(s3_server))
    reader = TiffArrayReader(source, "ome", file_meta(source, "ome").scenes[0], 0)
    reader.read((0, slice(None), slice(0, 1), slice(0, 8), slice(0, 8)))  # opens the file
    with tifffile.TiffFile(local) as tf:  # what the crop's tiles weigh: t=1, z=1..4
        pages = [tf.pages[6 + z] for z in range(1, 5)]
        tiles = sum(int(p.databytecounts[ty * 4 + tx]) for p in pages
                    for ty in (1, 2) for tx in (0, 1))  # fmt: skip
    before, n = relay.snapshot(), len(relay.lines)
    crop = reader.read((1, slice(None), slice(1, 5), slice(40, 90), slice(10, 60)))
    sent = _delta(relay.snapshot(), before)
    assert np.array_equal(crop, data[1, :, 1:5, 40:90, 10:60])
    assert sent.get("HEAD", 0) == 0
    # 4 planes x 2 x 2 tiles, in one concurrent call, gaps bridged within the overread budget
    # (these small tiles and the IFDs between pages are that close): no IFD read, no 50 MiB block
    assert 1 <= sent["GET"] <= 16, "\n".join(relay.lines[n:])
    assert tiles <= sent["bytes_down"] <= 3 * tiles  # the bound


def test_an_unpickled_tiff_reader_reads_its_tiles_without_parsing_the_file(
    s3_server: dict[str, Any], s3_new_bucket: str, relay: Relay, tmp_path: Path
) -> None:
    """What a DataLoader worker gets: the reader's pickled state carries the level's tile
    offsets and codec (plain values: imagecodecs decodes, no TiffFile), so its first crop costs
    exactly the requests the same crop costs a reader that has the file open (no header, no IFD
    read)."""
    pytest.importorskip("tlcore_tiff")
    import pickle

    import s3fs
    import tifffile

    from tlcore_tiff.array import TiffArrayReader
    from tlcore_tiff.meta import file_meta

    rng = np.random.default_rng(1)
    data = rng.integers(0, 400, (3, 2, 5, 96, 96)).astype(np.uint16)
    local = tmp_path / "w.ome.tif"
    tifffile.imwrite(local, data, ome=True, tile=(32, 32), compression="zlib",
                     metadata={"axes": "TCZYX"})  # fmt: skip
    s3fs.S3FileSystem(**s3_server).put_file(str(local), f"{s3_new_bucket}/w.ome.tif")
    source = Source.from_any(f"s3://{s3_new_bucket}/w.ome.tif", relay.options(s3_server))
    parent = TiffArrayReader(source, "ome", file_meta(source, "ome").scenes[0], 0)
    parent.read((0, slice(None), slice(0, 1), slice(0, 8), slice(0, 8)))  # the parent's open
    box = (2, slice(None), slice(1, 4), slice(20, 70), slice(40, 90))

    def cost(reader: TiffArrayReader) -> tuple[dict[str, int], np.ndarray]:
        before = relay.snapshot()
        crop = reader.read(box)
        return _delta(relay.snapshot(), before), crop

    warm, expected = cost(parent)
    blob = pickle.dumps(parent)
    worker = pickle.loads(blob)
    assert worker._handle is None  # no handle travels: the worker opens its own channel
    assert worker.table.codec is not None  # imagecodecs decodes: no TiffFile in the worker
    first, crop = cost(worker)
    assert np.array_equal(expected, data[2, :, 1:4, 20:70, 40:90])
    assert np.array_equal(crop, expected)
    assert first.get("HEAD", 0) == 0
    assert first["GET"] == warm["GET"] > 0, (first, warm)
    # the same ranges: only the response headers (dates, request ids) may differ
    assert abs(first["bytes_down"] - warm["bytes_down"]) <= 64 * first["GET"], (first, warm)
    assert len(blob) < 64 * 1024  # 30 pages x 9 tiles of offsets, no OME-XML


def _forked_crop(url: str, options: dict[str, Any], box: tuple[Any, ...], conn: Any) -> None:
    from tlcore.readers.cache import open_cached

    try:
        image = open_cached(url, 0, 0, options)  # the cache of opened images is empty here
        # synchronous: the threads of dask's default pool do not survive the fork
        conn.send(np.asarray(image.data[box].compute(scheduler="synchronous")))
    except BaseException as exc:  # reported, not lost, by the parent
        conn.send(repr(exc))


def test_a_tiff_worker_forked_after_the_parent_opened_it_parses_no_ifd(
    s3_server: dict[str, Any], s3_new_bucket: str, relay: Relay, tmp_path: Path
) -> None:
    """A DataLoader worker forked from a process that opened the file (the datamodule's
    validation does) opens the image again, but the parsed file (its page tables) comes from
    the inherited metadata cache: a few small requests (header, size), no IFD walk."""
    pytest.importorskip("tlcore_tiff")
    import multiprocessing as mp

    import s3fs
    import tifffile

    from tlcore.readers.cache import open_cached

    rng = np.random.default_rng(2)
    # 16 pages of ~128 KiB: walking their IFDs would cost a request per page
    data = rng.integers(0, 60000, (2, 1, 8, 256, 256)).astype(np.uint16)
    local = tmp_path / "f.ome.tif"
    tifffile.imwrite(local, data, ome=True, tile=(128, 128), compression="zlib",
                     metadata={"axes": "TCZYX"})  # fmt: skip
    s3fs.S3FileSystem(**s3_server).put_file(str(local), f"{s3_new_bucket}/f.ome.tif")
    url, options = f"s3://{s3_new_bucket}/f.ome.tif", relay.options(s3_server)
    box = (1, slice(None), slice(2, 6), slice(100, 160), slice(30, 90))
    image = open_cached(url, 0, 0, options)  # the parent's open: parses every IFD
    before = relay.snapshot()
    np.testing.assert_array_equal(image.data[box].compute(), data[box])
    warm = _delta(relay.snapshot(), before)

    ctx = mp.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    before = relay.snapshot()
    child = ctx.Process(target=_forked_crop, args=(url, options, box, child_end))
    child.start()
    got = parent_end.recv() if parent_end.poll(60) else "no answer in 60 s"
    child.join(10)
    sent = _delta(relay.snapshot(), before)
    assert not isinstance(got, str), got
    np.testing.assert_array_equal(got, data[box])
    assert warm["GET"] > 0 and warm.get("HEAD", 0) == 0
    # the crop's GETs plus the reopen's header reads and size lookups: far fewer than 16 IFDs
    extra = sent["GET"] + sent.get("HEAD", 0) - warm["GET"]
    assert 0 <= extra <= 6, (sent, warm)


# -- a worker's start: what the parent opened is handed over ------------------------------------
def _dataset(store_url: str, options: dict[str, Any]) -> Any:
    """A training dataset of random (4, 20, 20) crops of the remote store (imports torch)."""
    pytest.importorskip("torch")
    import pandas as pd

    from tlcore.training.dataset import TimelapseDataset

    rows = read_manifest(pd.DataFrame({"path": [store_url], "split": ["train"]}))["train"]
    return TimelapseDataset(rows, patch_shape=(4, 20, 20), storage_options=options, seed=3)


def _chunk_gets(sample: dict[str, Any], store_url: str) -> set[str]:
    """The GET request lines of exactly the chunks the sample's crop touches (chunks of the
    ``store_url`` fixture: 1, 1, 8, 32, 32, zarr v3 default keys)."""
    import itertools

    meta = sample["raw_meta"]
    spans = [
        range(start // c, (start + size - 1) // c + 1)
        for start, size, c in zip(meta["crop_start"], meta["crop_size"], (8, 32, 32))
    ]
    path = store_url.removeprefix("s3:/")
    return {f"GET {path}/0/c/{sample['T']}/0/{z}/{y}/{x}" for z, y, x in itertools.product(*spans)}


def _expected_pixels(store_url: str, s3_server: dict[str, Any], sample: dict[str, Any]) -> Any:
    meta = sample["raw_meta"]
    (z, y, x), (dz, dy, dx) = meta["crop_start"], meta["crop_size"]
    image = tlcore.open_lazy(store_url, storage_options=s3_server)
    return image.data[sample["T"], :, z : z + dz, y : y + dy, x : x + dx].compute()


def test_a_forked_worker_reads_only_its_chunks(
    s3_server: dict[str, Any], store_url: str, relay: Relay, tmp_path: Path
) -> None:
    import os
    import pickle

    dataset = _dataset(store_url, relay.options(s3_server))
    dataset[0]  # the parent opens the store (as validation does before training)
    n = len(relay.lines)
    out = tmp_path / "sample.pkl"
    pid = os.fork()
    if pid == 0:  # the child: what a forked DataLoader worker does, then leave at once
        code = 1
        try:
            sample = dataset[1]
            out.write_bytes(pickle.dumps({k: sample[k] for k in ("raw", "raw_meta", "T")}))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sample = pickle.loads(out.read_bytes())
    sent = relay.lines[n:]
    assert sorted(sent) == sorted(_chunk_gets(sample, store_url)), sent
    assert np.array_equal(sample["raw"].numpy(), _expected_pixels(store_url, s3_server, sample))


# ~13 s: a new interpreter (torch, MONAI) unpickles the dataset: in make test-slow.
@pytest.mark.slow
def test_an_unpickled_dataset_reads_only_its_chunks(
    s3_server: dict[str, Any], store_url: str, relay: Relay, tmp_path: Path
) -> None:
    import pickle
    import subprocess
    import sys

    dataset = _dataset(store_url, relay.options(s3_server))
    dataset[0]
    (tmp_path / "dataset.pkl").write_bytes(pickle.dumps(dataset))
    n = len(relay.lines)
    script = (
        "import pickle, sys; from pathlib import Path; d = Path(sys.argv[1]);"
        "ds = pickle.loads((d / 'dataset.pkl').read_bytes()); s = ds[1];"
        "(d / 'sample.pkl').write_bytes(pickle.dumps({k: s[k] for k in ('raw', 'raw_meta', 'T')}))"
    )
    # A new interpreter, as a spawned worker: nothing of the parent's but the pickled dataset
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=300)
    sample = pickle.loads((tmp_path / "sample.pkl").read_bytes())
    sent = relay.lines[n:]
    assert sorted(sent) == sorted(_chunk_gets(sample, store_url)), sent
    assert np.array_equal(sample["raw"].numpy(), _expected_pixels(store_url, s3_server, sample))


def test_a_throttled_request_waits_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """While one request backs off from 503s, the others in flight finish: nothing waits for
    the throttled one (the order of completion, not a timing)."""
    import asyncio

    slow = OSError("An error occurred (SlowDown): Please reduce your request rate.")
    monkeypatch.setattr(remote, "jittered", lambda attempt: 0.05)  # a fixed wait, for order
    finished: list[str] = []

    async def request(name: str, failures: int) -> str:
        calls: list[int] = []

        async def once() -> str:
            calls.append(1)
            if len(calls) <= failures:
                raise slow
            await asyncio.sleep(0.001)
            return name

        got = await remote.retry_async(once, f"reading {name}", 4)
        finished.append(got)
        return got

    async def crop() -> list[str]:
        return list(await asyncio.gather(request("throttled", 3), request("a", 0),
                                         request("b", 0)))  # fmt: skip

    assert asyncio.run(crop()) == ["throttled", "a", "b"]
    assert finished[-1] == "throttled" and set(finished[:2]) == {"a", "b"}
