"""Fixtures shared by the core's and the plugins' tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
TESTDATA = Path(os.environ.get("TLCORE_TESTDATA", ROOT.parent / "shared" / "testdata"))


@pytest.fixture(scope="session", autouse=True)
def _private_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests' image statistics go to a folder of their own, not the user's cache (set in
    the environment, so commands the tests run in subprocesses use it too)."""
    previous = os.environ.get("TLCORE_STATS_DIR")
    os.environ["TLCORE_STATS_DIR"] = str(tmp_path_factory.mktemp("tlcore-stats"))
    yield
    if previous is None:
        os.environ.pop("TLCORE_STATS_DIR", None)
    else:
        os.environ["TLCORE_STATS_DIR"] = previous


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared real sample files (../shared/testdata); tests skip without them."""
    if not TESTDATA.is_dir():
        pytest.skip(
            f"shared test data not found at {TESTDATA}: put the shared folder beside the "
            "repository or set TLCORE_TESTDATA"
        )
    return TESTDATA


class ChunkOpens:
    """Counts the files the process opens under a folder, with the conformance kit's audit-hook
    counting (:mod:`tlcore.testing.iowatch`, which plugin authors get too): a real measurement
    of what a read touched, no patching."""

    def __init__(self) -> None:
        self._context: Any = None
        self._watch: Any = None

    def watch(self, root: str | os.PathLike[str]) -> list[str]:
        from tlcore.testing import iowatch

        self.stop()
        self._context = iowatch.watch(root)
        self._watch = self._context.__enter__()
        return self.paths

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = None

    @property
    def paths(self) -> list[str]:
        """Files opened under the watched folder, in order (repeats included)."""
        return list(self._watch.opened) if self._watch is not None else []

    def chunk_files(self) -> set[str]:
        """Opened files that hold pixels (not zarr metadata documents)."""
        meta = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
        return {p for p in self.paths if not p.endswith(meta)}


@pytest.fixture
def file_opens() -> Iterator[ChunkOpens]:
    opens = ChunkOpens()
    yield opens
    opens.stop()


@pytest.fixture
def synthetic_store(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``synthetic_store(shape=..., chunks=..., **write_ome_zarr kwargs)``."""
    from tlcore.testing.synthetic import write_ome_zarr

    def make(name: str = "synthetic.ome.zarr", **kwargs: object) -> Path:
        return write_ome_zarr(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, object]]:
    """A real S3-protocol server (moto in server mode) on loopback, for cloud-path tests.

    Yields the fsspec ``storage_options`` that reach it.
    """
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options: dict[str, object] = {
        "endpoint_url": f"http://{host}:{port}",
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    try:
        yield options
    finally:
        server.stop()


@pytest.fixture
def s3_new_bucket(s3_server: dict[str, Any], request: pytest.FixtureRequest) -> str:
    """A new, empty bucket on the loopback S3 server, named after the test (its name)."""
    import re

    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    _create_bucket(s3_server, name)
    return name


def _create_bucket(s3_server: dict[str, Any], name: str) -> None:
    """A new bucket ``name`` on the loopback S3 server (the credentials of ``s3_server``)."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=str(s3_server["endpoint_url"]),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)


@pytest.fixture
def relay(s3_server: dict[str, Any]) -> Iterator[Any]:
    """A :class:`tlcore.io.relay.Relay` in front of the loopback S3 server, counting every
    request (and adding latency or faults where a test asks), stopped after the test."""
    from tlcore.io.relay import Relay

    r = Relay(str(s3_server["endpoint_url"]))
    yield r
    r.stop()


@pytest.fixture(scope="session")
def s3_movie(
    s3_server: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., str]:
    """Factory: ``s3_movie(bucket, shape, chunks, seed)``, the URL of a synthetic OME-Zarr
    timelapse (:func:`tlcore.testing.synthetic.write_ome_zarr`) uploaded as
    ``s3://<bucket>/movie.ome.zarr`` to a new bucket of the loopback S3 server; written and
    uploaded once per session for each set of arguments."""
    import s3fs

    from tlcore.testing.synthetic import write_ome_zarr

    made: dict[tuple[Any, ...], str] = {}

    def make(bucket: str, shape: tuple[int, ...], chunks: tuple[int, ...], seed: int = 0) -> str:
        key = (bucket, tuple(shape), tuple(chunks), seed)
        if key not in made:
            if any(k[0] == bucket for k in made):
                raise ValueError(f"bucket {bucket!r} already holds another movie")
            _create_bucket(s3_server, bucket)
            local = write_ome_zarr(tmp_path_factory.mktemp(bucket) / "movie.ome.zarr",
                                   shape=shape, chunks=chunks, seed=seed)  # fmt: skip
            s3fs.S3FileSystem(**s3_server).put(str(local), f"{bucket}/movie.ome.zarr",
                                               recursive=True)  # fmt: skip
            made[key] = f"s3://{bucket}/movie.ome.zarr"
        return made[key]

    return make
