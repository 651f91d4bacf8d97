"""A remote TIFF read through obstore where a process may use it (a DataLoader worker with
``TLCORE_S3_CLIENT=obstore``), against a real S3 server (moto on loopback) behind
:class:`tlcore.io.relay.Relay`: the same pixels as the file, every tile request sent by obstore.
The read runs in a fresh Python process: this test process must not import obstore (see
``tests/io/test_objstore.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlcore.io import clients
from tlcore.io.relay import Relay

_WORKER = """
import json, sys
import numpy as np
from tlcore import Source
from tlcore.io import clients
from tlcore_tiff.array import TiffArrayReader
from tlcore_tiff.meta import file_meta
url, options, box, reads = json.loads(sys.argv[1])
source = Source.from_any(url, options)
meta = file_meta(source, "ome").scenes[0]  # opened as the parent does (s3fs)
clients.mark_worker()
reader = TiffArrayReader(source, "ome", meta, 0)
region = tuple(slice(a, b) for a, b in box)
for _ in range(reads):
    got = reader.read(region)
np.save(sys.stdout.buffer, got)
"""


def _read_in_worker(url: str, options: dict[str, Any], box: list[tuple[int, int]],
                    reads: int = 1) -> tuple[np.ndarray, str]:  # fmt: skip
    import io

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER), json.dumps([url, options, box, reads])],
        capture_output=True, timeout=120, env={**os.environ, clients.ENV: "obstore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    return np.load(io.BytesIO(done.stdout)), done.stderr.decode()


BOX = [(1, 2), (0, 1), (0, 3), (10, 50), (5, 60)]


@pytest.fixture(scope="module")
def movie(tiled_movie: Callable[..., tuple[Path, np.ndarray]]) -> tuple[Path, np.ndarray]:
    return tiled_movie("o.ome.tif", (2, 1, 3, 64, 64), seed=3, tile=32)


@pytest.fixture
def remote(upload: Callable[[Path], str], movie: tuple[Path, np.ndarray]) -> str:
    return upload(movie[0])


def test_a_worker_reads_a_remote_tiff_through_obstore(
    s3_server: dict[str, Any], remote: str, relay: Relay, movie: tuple[Path, np.ndarray]
) -> None:
    since = len(relay.lines)
    got, _ = _read_in_worker(remote, relay.options(s3_server), BOX)
    np.testing.assert_array_equal(got, movie[1][tuple(slice(a, b) for a, b in BOX)])
    agents = relay.agents[since:]
    tiles = [a for a, line in zip(agents, relay.lines[since:]) if a == "object_store"]
    # the tiles' requests (12 tiles of 3 pages, merged) all through obstore; the rest is
    # the opening, through s3fs as in the parent
    assert tiles and all(line.startswith("GET ") for a, line in
                         zip(agents, relay.lines[since:]) if a == "object_store")  # fmt: skip
    assert any(a != "object_store" for a in agents)


def test_a_tiff_obstore_cannot_read_is_read_through_s3fs_from_then_on(
    s3_server: dict[str, Any], remote: str, movie: tuple[Path, np.ndarray]
) -> None:
    # obstore's requests answered as for a bucket in another region (301 PermanentRedirect)
    refusing = Relay(str(s3_server["endpoint_url"]), refuse_agents=("object_store",))
    try:
        since = len(refusing.lines)
        got, stderr = _read_in_worker(remote, refusing.options(s3_server), BOX, reads=3)
        agents = refusing.agents[since:]
    finally:
        refusing.stop()
    np.testing.assert_array_equal(got, movie[1][tuple(slice(a, b) for a, b in BOX)])
    tried = [i for i, a in enumerate(agents) if a == "object_store"]
    # obstore tried the first read's requests once each, never again; s3fs read the rest
    assert tried and tried[-1] < len(agents) - 1
    assert all(a != "object_store" for a in agents[tried[-1] + 1 :])
    assert stderr.count("obstore could not read") == 1 and remote in stderr
