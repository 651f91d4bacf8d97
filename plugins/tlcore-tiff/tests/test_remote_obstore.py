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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tlcore.io import clients
from tlcore.io.relay import Relay

_WORKER = """
import json, sys
import numpy as np
from tlcore import Source
from tlcore.io import clients
from tlcore_tiff.array import TiffArrayReader
from tlcore_tiff.meta import file_meta
url, options, box = json.loads(sys.argv[1])
source = Source.from_any(url, options)
meta = file_meta(source, "ome").scenes[0]  # opened as the parent does (s3fs)
clients.mark_worker()
reader = TiffArrayReader(source, "ome", meta, 0)
region = tuple(slice(a, b) for a, b in box)
np.save(sys.stdout.buffer, reader.read(region))
"""


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(3).integers(0, 900, (2, 1, 3, 64, 64)).astype(np.uint16)
    path = tmp_path_factory.mktemp("tiff-obstore") / "o.ome.tif"
    tifffile.imwrite(path, data, ome=True, tile=(32, 32), compression="zlib",
                     metadata={"axes": "TCZYX"})  # fmt: skip
    return path, data


def test_a_worker_reads_a_remote_tiff_through_obstore(
    s3_server: dict[str, Any], s3_new_bucket: str, relay: Relay, movie: tuple[Path, np.ndarray]
) -> None:
    import io

    import s3fs

    s3fs.S3FileSystem(**s3_server).put_file(str(movie[0]), f"{s3_new_bucket}/o.ome.tif")
    url = f"s3://{s3_new_bucket}/o.ome.tif"
    box = [(1, 2), (0, 1), (0, 3), (10, 50), (5, 60)]
    since = len(relay.lines)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER),
         json.dumps([url, relay.options(s3_server), box])],
        capture_output=True, timeout=120, env={**os.environ, clients.ENV: "obstore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    got = np.load(io.BytesIO(done.stdout))
    np.testing.assert_array_equal(got, movie[1][tuple(slice(a, b) for a, b in box)])
    agents = relay.agents[since:]
    tiles = [a for a, line in zip(agents, relay.lines[since:]) if a == "object_store"]
    # the tiles' requests (12 tiles of 3 pages, merged) all through obstore; the rest is
    # the opening, through s3fs as in the parent
    assert tiles and all(line.startswith("GET ") for a, line in
                         zip(agents, relay.lines[since:]) if a == "object_store")  # fmt: skip
    assert any(a != "object_store" for a in agents)
