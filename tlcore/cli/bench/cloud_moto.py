"""The S3 server of ``tlcore bench cloud``: moto in server mode, in its own process, set up to
serve a byte range of a large object as cheaply as one of a small object.

A real object store's first-byte cost does not grow with the object's size. moto's does: every
GET, ranged or not, reads the whole object out of its buffer (``FakeKey.value``) before taking
the range, under the object's lock. Objects above ``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`` (moto's
documented setting, about 5 MiB by default) live in a temporary file, and every GET then reads
that file whole. So a 1 KiB range of a 46 MiB TIFF cost about 50 ms (105 ms on a busy machine),
against 5-8 ms for a 100 KB object, and all the range requests to that object queue on its lock:
the bench measured moto, not the reader. Two changes, in this server process only (the tests'
server is stock moto):

* ``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE`` is raised to :data:`KEY_BUFFER_BYTES` (unless the
  environment sets it), so the bench's objects stay in memory;
* :func:`serve_without_copy`: an in-memory object's bytes are handed to the response without
  the copy (``BytesIO.getvalue`` shares the stored bytes; moto slices the range out of them).
  The bytes served are the same; only the whole-object copy per request is gone: a 1 KiB range
  of the 46 MiB object then costs 2-3 ms, as a small object's. Raising the buffer alone does
  not help (the copy from memory costs about what the read from the page cache does).

``tlcore bench cloud --stock-moto`` runs moto as it comes (its figures are then the server's).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

#: Objects up to this size stay in the server's memory (the bench's are at most tens of MiB).
KEY_BUFFER_BYTES = 1024 * 2**20
_ENV = "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(stock: bool = False) -> Iterator[str]:
    """A moto S3 server in its own process, serving ranges without the whole-object copy
    unless ``stock`` (see the module docstring); yields its URL."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise SystemExit("tlcore bench cloud needs moto: pip install 'moto[server]'") from None
    port = free_port()
    env = dict(os.environ)
    module = "moto.server"
    if not stock:
        env.setdefault(_ENV, str(KEY_BUFFER_BYTES))
        module = __name__
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the moto server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def serve_without_copy() -> None:
    """Make moto hand an in-memory object's stored bytes to its responses without copying
    them (see the module docstring); objects in a temporary file are read as moto does."""
    from moto.s3.models import FakeKey

    setter = FakeKey.value.fset

    def value(self: Any) -> bytes:
        with self.lock:
            buffer = self._value_buffer  # a tempfile.SpooledTemporaryFile
            if getattr(buffer, "_rolled", True):
                buffer.seek(0)
                data: bytes = buffer.read()
                return data
            # io.BytesIO.getvalue() returns its bytes object itself when nothing else holds
            # it (after trimming it once); a later write to the object copies it first.
            shared: bytes = buffer._file.getvalue()
            return shared

    FakeKey.value = property(value, setter)


if __name__ == "__main__":
    serve_without_copy()
    from moto.server import main

    main()
