"""Remote manifests and images against a real S3-protocol server (moto on loopback, through a
byte-counting proxy where bytes or outages matter): local copies for local-only readers shared
by workers, an epoch through the datamodule, bytes per crop, faults, credentials; GCS and Azure
paths offline."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tlcore
from tlcore import remote
from tlcore.io.relay import Relay
from tlcore.io.source import Source, redact
from tlcore.sampling.manifest import read_manifest

SECRET = "s3cr3t-DO-NOT-PRINT-4711"
# Fail fast in fault tests: one attempt each at tlcore's and botocore's level, short timeouts.
FAST_FAIL = {
    "tlcore_retries": 1,
    "config_kwargs": {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}},
}


@pytest.fixture
def bucket(s3_new_bucket: str) -> str:
    return s3_new_bucket


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    remote.clear_memo()
    yield tmp_path / "cache"
    remote.clear_memo()


@pytest.fixture
def proxy(s3_server: dict[str, Any]) -> Iterator[Relay]:
    p = Relay(str(s3_server["endpoint_url"]))
    yield p
    p.stop()


def _put(s3_server: dict[str, Any], local: Path, url: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    if local.is_dir():
        fs.put(str(local), url, recursive=True)
    else:
        fs.put_file(str(local), url)


def _fetches(cache: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for log in cache.rglob(remote.FETCH_LOG)
        for line in log.read_text().splitlines()
    ]


# -- options and paths (offline) -------------------------------------------------------------
def test_reader_options_are_kept_from_fsspec_and_s3_gets_timeouts() -> None:
    source = Source.from_any(
        "s3://bucket/a.czi",
        {"czi_tiles": True, "tlcore_cache_dir": "/c", "anon": True, "lif_mosaic": "tiles"},
    )
    assert source.reader_options() == {
        "czi_tiles": True,
        "tlcore_cache_dir": "/c",
        "lif_mosaic": "tiles",
    }
    fs_options = source.fsspec_options()
    assert fs_options["anon"] is True and not any("_" in k[:5] for k in fs_options if k != "anon")
    assert fs_options["config_kwargs"]["read_timeout"] == 60  # no read waits forever
    mine = Source.from_any("s3://b/a.nd2", {"config_kwargs": {"read_timeout": 7}})
    assert mine.fsspec_options()["config_kwargs"]["read_timeout"] == 7  # the user's wins
    assert mine.fsspec_options()["config_kwargs"]["connect_timeout"] == 10


@pytest.mark.parametrize(
    ("url", "protocol", "name"),
    [
        ("gs://lab-bucket/movies/a.nd2", "gs", "a.nd2"),
        ("gcs://lab-bucket/a.ome.zarr/", "gcs", "a.ome.zarr"),
        ("az://container/dir/b.czi", "az", "b.czi"),
        ("abfs://container/b.lif", "abfs", "b.lif"),
        ("https://example.org/data/c.ome.tif", "https", "c.ome.tif"),
    ],
)
def test_gcs_azure_and_http_paths_parse(url: str, protocol: str, name: str) -> None:
    options = {"token": SECRET, "account_key": SECRET, "tiff_dims": "TYX"}
    source = Source.from_any(url, options)
    assert (source.protocol, source.name, source.is_local) == (protocol, name, False)
    assert source.uri == url.rstrip("/")
    assert source.fsspec_options() == {"token": SECRET, "account_key": SECRET}
    assert source.reader_options() == {"tiff_dims": "TYX"}
    assert SECRET not in repr(source)


@pytest.mark.parametrize(("url", "package"), [("gs://b/x.nd2", "gcsfs"), ("az://c/x.nd2", "adlfs")])
def test_gcs_and_azure_name_the_package_they_need(url: str, package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(ImportError, match=package):
        Source.from_any(url, {"token": SECRET}).filesystem()


def test_a_remote_local_only_file_is_cached_under_the_configured_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(remote.CACHE_ENV, str(tmp_path / "env"))
    assert remote.cache_dir() == tmp_path / "env"
    assert remote.cache_dir({"tlcore_cache_dir": str(tmp_path / "opt")}) == tmp_path / "opt"
    monkeypatch.delenv(remote.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert remote.cache_dir() == tmp_path / "xdg" / "tlcore" / "remote"
    info = {"size": 10, "ETag": '"abc"'}
    a = remote.cached_path(Source.from_any("gs://b/x.nd2"), info)
    b = remote.cached_path(Source.from_any("gs://b/x.nd2"), {**info, "ETag": '"new"'})
    assert a.name == b.name == "x.nd2" and a != b  # a changed object is fetched again


def test_transient_errors_are_retried_then_named() -> None:
    calls: list[float] = []

    def flaky() -> str:
        calls.append(time.perf_counter())
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert remote.retry(flaky, "reading s3://b/x", attempts=3, backoff_s=0.01) == "ok"
    assert len(calls) == 3 and calls[2] - calls[1] >= calls[1] - calls[0]  # backing off
    with pytest.raises(remote.RemoteError, match=r"reading s3://b/x failed after 2 attempt"):
        remote.retry(lambda: (_ for _ in ()).throw(TimeoutError("slow")), "reading s3://b/x", 2, 0)
    missing: list[int] = []

    def gone() -> None:
        missing.append(1)
        raise FileNotFoundError("s3://b/x")

    with pytest.raises(FileNotFoundError):
        remote.retry(gone, "reading s3://b/x", attempts=5, backoff_s=0)
    assert missing == [1]  # a missing file is not retried


# -- S3: manifests, copies, workers ----------------------------------------------------------
def test_remote_manifest_resolves_relative_paths_against_its_folder(
    s3_server: dict[str, Any], bucket: str
) -> None:
    import s3fs
    from upath import UPath

    fs = s3fs.S3FileSystem(**s3_server)
    csv = "path,split,options\nimages/a.ome.zarr,train,\nb.nd2,val,czi_tiles=true\n"
    csv += "s3://other-bucket/c.nd2,test,\n"
    fs.pipe(f"{bucket}/exp1/manifest.csv", csv.encode())
    url = f"s3://{bucket}/exp1/manifest.csv"
    # Reader options in the run's storage options must not reach pandas' fsspec call.
    options = {**s3_server, "tlcore_cache_dir": "/tmp/x", "czi_tiles": True}
    for location in (url, UPath(url, **s3_server)):
        rows = read_manifest(location, storage_options=options)
        assert rows["train"][0].path == f"s3://{bucket}/exp1/images/a.ome.zarr"
        assert rows["val"][0].path == f"s3://{bucket}/exp1/b.nd2"
        assert rows["val"][0].options == {"czi_tiles": True}
        assert rows["test"][0].path == "s3://other-bucket/c.nd2"


def test_remote_manifest_missing_is_named(s3_server: dict[str, Any], bucket: str) -> None:
    url = f"s3://{bucket}/nothing.csv"
    with pytest.raises(tlcore.TlcoreError, match=f"manifest {url} does not exist"):
        read_manifest(url, storage_options=s3_server)


def test_an_epoch_with_two_workers_fetches_the_nd2_file_once(
    s3_server: dict[str, Any],
    bucket: str,
    cache: Path,
    testdata: Path,
    synthetic_store: Callable[..., Path],
) -> None:
    pytest.importorskip("tlcore_nd2")
    nd2 = testdata / "nd2" / "example-timelapse.nd2"  # T=53, C=1, Z=1, 64x64
    store = synthetic_store(shape=(6, 2, 1, 64, 64), chunks=(1, 1, 1, 32, 32))
    _put(s3_server, nd2, f"{bucket}/exp/raw/movie.nd2")
    _put(s3_server, store, f"{bucket}/exp/raw/movie.ome.zarr")
    manifest = pd.DataFrame(
        {
            "path": ["raw/movie.nd2", "raw/movie.nd2", "raw/movie.ome.zarr"],
            "split": ["train"] * 3,
            "channel": ["0"] * 3,
            "start": [0, 20, 0],
            "stop": [20, 53, 6],
        }
    )
    import s3fs

    s3fs.S3FileSystem(**s3_server).pipe(
        f"{bucket}/exp/manifest.csv", manifest.to_csv(index=False).encode()
    )
    options = {**s3_server, "tlcore_cache_dir": str(cache)}
    dm = tlcore.RandomTimelapseDatamodule(
        f"s3://{bucket}/exp/manifest.csv",
        transforms=_pipeline(options),
        spatial_dims=2,
        batch_size=2,
        samples_per_epoch={"train": 12},
        num_workers=2,
        storage_options=options,
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 6
    assert all(tuple(b["raw"].shape) == (2, 1, 32, 32) for b in batches), batches[0]["raw"].shape
    rows = {int(r) for b in batches for r in b["row"]}
    assert {0, 1} & rows and 2 in rows  # both formats were read
    fetches = _fetches(cache)
    assert len(fetches) == 1, fetches  # two workers, both opened it: one download
    assert fetches[0]["uri"] == f"s3://{bucket}/exp/raw/movie.nd2"
    assert not list(cache.rglob("*.part"))  # nothing half-written left behind
    copy = next(cache.rglob("movie.nd2"))
    assert copy.stat().st_size == nd2.stat().st_size and copy.stat().st_mode & 0o222 == 0


def _pipeline(storage_options: dict[str, Any], roi: tuple[int, int] = (32, 32)) -> Any:
    # The default pipeline's LoadLazyd does not get the run's storage options yet (see
    # test_the_default_pipeline_gets_the_storage_options): pass them explicitly.
    from monai.transforms import Compose

    from tlcore.transforms import ComputeDaskd, LoadLazyd, RandLazyCropd

    return Compose(
        [
            LoadLazyd(keys="raw", spatial_dims=2, storage_options=storage_options),
            RandLazyCropd(keys="raw", roi_size=roi),
            ComputeDaskd(keys="raw", dtype="float32"),
        ]
    )


def test_the_default_pipeline_gets_the_storage_options(
    s3_server: dict[str, Any], bucket: str, synthetic_store: Callable[..., Path]
) -> None:
    store = synthetic_store(shape=(2, 1, 1, 32, 32), chunks=(1, 1, 1, 32, 32))
    url = f"s3://{bucket}/m.ome.zarr"
    _put(s3_server, store, url)
    dm = tlcore.RandomTimelapseDatamodule(
        pd.DataFrame({"path": [url], "split": ["train"]}),
        spatial_dims=2,
        patch_shape=(16, 16),
        storage_options=s3_server,
    )
    dm.setup("fit")
    assert tuple(dm.dataset("train")[0]["raw"].shape) == (1, 16, 16)  # C, Y, X


def test_concurrent_processes_share_one_download(
    s3_server: dict[str, Any], bucket: str, cache: Path, testdata: Path
) -> None:
    import multiprocessing

    nd2 = testdata / "nd2" / "example-zstack.nd2"
    _put(s3_server, nd2, f"{bucket}/z.nd2")
    source = Source.from_any(f"s3://{bucket}/z.nd2", {**s3_server, "tlcore_cache_dir": cache})
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        paths = pool.map(remote.local_copy, [source] * 3)
    assert len(set(paths)) == 1 and paths[0].read_bytes() == nd2.read_bytes()
    assert len(_fetches(cache)) == 1


# -- bytes on the wire -----------------------------------------------------------------------
def test_an_ome_zarr_crop_fetches_only_the_chunk_it_touches(
    s3_server: dict[str, Any],
    bucket: str,
    proxy: Relay,
    synthetic_store: Callable[..., Path],
) -> None:
    # Noise does not compress: each 64x64 uint16 chunk holds ~8 KiB on the server.
    store = synthetic_store(shape=(4, 1, 1, 256, 256), chunks=(1, 1, 1, 64, 64))
    url = f"s3://{bucket}/m.ome.zarr"
    _put(s3_server, store, url)
    chunk = store / "0" / "c" / "1" / "0" / "0" / "0" / "1"
    assert chunk.is_file(), sorted(p.name for p in store.rglob("*"))[:10]
    total = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    image = tlcore.open_lazy(url, storage_options=proxy.options(s3_server))
    image.data[0, :, :, :8, :8].compute()  # the first read also sets up the client
    before = proxy.bytes_down
    crop = image.data[1, :, :, 10:50, 70:120].compute()  # inside chunk (t1, y0, x1)
    sent = proxy.bytes_down - before
    assert crop.shape == (1, 1, 40, 50)
    size = chunk.stat().st_size
    assert size <= sent <= size + 2048, (size, sent)  # the chunk plus the responses' headers
    assert sent < total / 30


# -- faults ----------------------------------------------------------------------------------
@pytest.mark.parametrize("what", ["bucket", "key"])
def test_wrong_bucket_or_key_is_named(
    s3_server: dict[str, Any], bucket: str, cache: Path, what: str
) -> None:
    url = "s3://no-such-bucket-x/a.nd2" if what == "bucket" else f"s3://{bucket}/missing.nd2"
    options = {**s3_server, "secret": SECRET, "tlcore_cache_dir": cache}
    with pytest.raises(FileNotFoundError) as info:
        tlcore.open_lazy(url, storage_options=options)
    assert url in str(info.value) and SECRET not in str(info.value)


def test_missing_credentials_are_named(
    s3_server: dict[str, Any], bucket: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(cache / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cache / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url = f"s3://{bucket}/a.nd2"
    options = {
        "endpoint_url": s3_server["endpoint_url"],
        "tlcore_cache_dir": cache,
        "skip_instance_cache": True,
    }
    with pytest.raises(remote.RemoteError, match="NoCredentialsError") as info:
        tlcore.open_lazy(url, storage_options=options)
    assert url in str(info.value) and "credentials" in str(info.value)


def test_unreachable_endpoint_fails_fast_and_names_the_url(
    s3_server: dict[str, Any], cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Relay(str(s3_server["endpoint_url"]))
    dead.stop()
    url = "s3://some-bucket/a.nd2"
    options = {**dead.options(s3_server), "secret": SECRET, "tlcore_cache_dir": cache}
    options.update(FAST_FAIL)
    options["tlcore_retries"] = 2
    with caplog.at_level(logging.DEBUG), pytest.raises(remote.RemoteError) as info:
        tlcore.open_lazy(url, storage_options=options)
    message = str(info.value)
    assert url in message and "after 2 attempt(s)" in message and "Could not connect" in message
    assert "retrying" in caplog.text  # the retry is logged...
    assert SECRET not in message and SECRET not in caplog.text  # ...credentials never


def test_dataset_errors_name_the_row_and_path_not_the_credentials(
    s3_server: dict[str, Any], bucket: str, cache: Path
) -> None:
    frame = pd.DataFrame({"path": [f"s3://{bucket}/gone.nd2"], "split": ["train"]})
    dm = tlcore.RandomTimelapseDatamodule(
        frame,
        spatial_dims=2,
        storage_options={**s3_server, "secret": SECRET, "tlcore_cache_dir": cache},
    )
    # Caught when the manifest is validated (in setup), or else when the sample is made.
    with pytest.raises(tlcore.TlcoreError) as info:
        dm.setup("fit")
        dm.dataset("train")[0]
    message = str(info.value)
    assert "DataFrame row 0" in message and f"s3://{bucket}/gone.nd2" in message
    assert SECRET not in message and SECRET not in repr(info.value.__cause__)


def test_server_stopped_mid_epoch_ends_with_an_error_naming_the_row(
    s3_server: dict[str, Any],
    bucket: str,
    proxy: Relay,
    synthetic_store: Callable[..., Path],
) -> None:
    store = synthetic_store(shape=(8, 1, 1, 64, 64), chunks=(1, 1, 1, 32, 32))
    url = f"s3://{bucket}/m.ome.zarr"
    _put(s3_server, store, url)
    dm = tlcore.RandomTimelapseDatamodule(
        pd.DataFrame({"path": [url], "split": ["train"]}),
        transforms=_pipeline({**proxy.options(s3_server), **FAST_FAIL}),
        spatial_dims=2,
        samples_per_epoch={"train": 40},
        num_workers=2,
        storage_options={**proxy.options(s3_server), **FAST_FAIL},
    )
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    next(loader)
    proxy.stop()
    started = time.perf_counter()
    with pytest.raises(Exception) as info:
        for _ in loader:
            pass
    elapsed = time.perf_counter() - started
    assert f"DataFrame row 0 ({url})" in str(info.value)
    # A hang guard, not a speed claim: with these timeouts it ends in seconds.
    assert elapsed < 120


def test_redact_hides_nested_credentials() -> None:
    options = {
        "key": "AKIA",
        "secret": SECRET,
        "client_kwargs": {"aws_session_token": SECRET, "region_name": "eu"},
        "anon": False,
        "endpoint_url": "http://x",
    }
    shown = redact(options)
    assert SECRET not in repr(shown) and "AKIA" not in repr(shown)
    assert shown["endpoint_url"] == "http://x" and shown["client_kwargs"]["region_name"] == "eu"


def test_sample_metadata_carries_no_credentials(synthetic_store: Callable[..., Path]) -> None:
    from tlcore.transforms import LoadLazyd

    store = synthetic_store(shape=(2, 1, 1, 16, 16))
    load = LoadLazyd(keys="raw", spatial_dims=2, storage_options={"secret": SECRET})
    sample = load({"original_path": str(store), "T": 0})
    assert SECRET not in repr(sample)
