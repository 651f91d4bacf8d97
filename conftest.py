"""Fixtures shared by the core's and the plugins' tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
TESTDATA = Path(os.environ.get("TLCORE_TESTDATA", ROOT.parent / "shared" / "testdata"))


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
    """Counts the files the process opens under a folder, through Python's audit hooks: a real
    measurement of what a read touched, no patching. ``sys.addaudithook`` cannot be removed,
    so one hook serves the whole session and is switched by ``watch``."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.paths: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[object, ...]) -> None:
        if event == "open" and self.root is not None:
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                path = os.fsdecode(path)
                if path.startswith(self.root):
                    self.paths.append(path)

    def watch(self, root: str | os.PathLike[str]) -> list[str]:
        self.root = os.path.abspath(root) + os.sep
        self.paths = []
        return self.paths

    def chunk_files(self) -> set[str]:
        """Opened files that hold pixels (not zarr metadata documents)."""
        meta = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
        return {p for p in self.paths if not p.endswith(meta)}


_opens: ChunkOpens | None = None


@pytest.fixture
def file_opens() -> Iterator[ChunkOpens]:
    global _opens
    if _opens is None:
        _opens = ChunkOpens()
    yield _opens
    _opens.root = None


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
