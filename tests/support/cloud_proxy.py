"""A byte-counting TCP proxy in front of the loopback S3 server, for the cloud tests.

Counts the bytes really sent on the wire each way (HTTP headers included), and can be stopped to
play an endpoint that goes away mid-epoch. Forked DataLoader workers talk to it like anyone.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any
from urllib.parse import urlparse


class CountingProxy:
    """``CountingProxy("http://127.0.0.1:5000")``: listens on a free loopback port
    (:attr:`url`) and forwards every connection to the target."""

    def __init__(self, target_url: str) -> None:
        parsed = urlparse(target_url)
        self._target = (parsed.hostname or "127.0.0.1", int(parsed.port or 80))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._down = 0  # server -> client
        self._up = 0
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def bytes_down(self) -> int:
        """Bytes the server sent to clients so far."""
        with self._lock:
            return self._down

    @property
    def bytes_up(self) -> int:
        with self._lock:
            return self._up

    def options(self, storage_options: dict[str, Any]) -> dict[str, Any]:
        """``storage_options`` pointed at this proxy."""
        return {**storage_options, "endpoint_url": self.url}

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._stopped:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                with self._lock:
                    if down:
                        self._down += len(data)
                    else:
                        self._up += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """The endpoint goes away: open connections are cut, new ones are refused."""
        with self._lock:
            self._stopped = True
            sockets, self._sockets = self._sockets, []
        # Forked workers hold the listening socket too: shut it down, not just this fd.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
