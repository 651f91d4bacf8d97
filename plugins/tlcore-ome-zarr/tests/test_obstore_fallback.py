"""A remote OME-Zarr store that obstore cannot read but s3fs can (a bucket in another region
than the one configured: AWS answers 301 PermanentRedirect, which obstore cannot follow) is read
through s3fs after obstore's first failure, in a DataLoader worker with obstore allowed; against
a real S3 server (moto on loopback) behind :class:`tlcore.io.relay.Relay`, which plays the
region mismatch for obstore's requests only. The reads run in a fresh Python process: this test
process must not import obstore (see ``tests/io/test_objstore.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from tlcore.io import clients
from tlcore.io.relay import Relay

_WORKER = """
import json, sys
import numpy as np
import tlcore
from tlcore.io import clients
url, options = json.loads(sys.argv[1])
clients.mark_worker()  # this process may use obstore (TLCORE_S3_CLIENT=obstore)
image = tlcore.open_lazy(url, storage_options=options)
for t in range(image.shape[0]):
    np.save(sys.stdout.buffer, np.asarray(image.data[t].compute()))
"""


def test_a_store_obstore_cannot_read_is_read_through_s3fs(
    s3_server: dict[str, Any], s3_movie: Callable[..., str]
) -> None:
    import io

    import zarr

    url = s3_movie("t-obstore-fallback", (3, 1, 4, 32, 32), (1, 1, 4, 16, 16), seed=5)
    refusing = Relay(str(s3_server["endpoint_url"]), refuse_agents=("object_store",))
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_WORKER),
             json.dumps([url, refusing.options(s3_server)])],
            capture_output=True, timeout=120, env={**os.environ, clients.ENV: "obstore"},
        )  # fmt: skip
        agents = list(refusing.agents)
    finally:
        refusing.stop()
    assert done.returncode == 0, done.stderr.decode()
    stream = io.BytesIO(done.stdout)
    import s3fs

    store = zarr.storage.FsspecStore(s3fs.S3FileSystem(**s3_server, asynchronous=True),
                                     path=url[len("s3://"):] + "/0", read_only=True)  # fmt: skip
    expected = np.asarray(zarr.open_array(store, mode="r")[...])
    for t in range(3):
        np.testing.assert_array_equal(np.load(stream)[0], expected[t, 0])
    stderr = done.stderr.decode()
    assert stderr.count("obstore could not read") == 1 and url in stderr
    tried = [i for i, a in enumerate(agents) if a == "object_store"]
    assert tried and all(a != "object_store" for a in agents[tried[-1] + 1 :])
    assert len(agents) - tried[-1] > 3  # the later reads all went through s3fs
