"""A TCP relay in front of an HTTP object store on loopback, for benchmarks and tests: it adds a
fixed latency to every request, counts requests by method and bytes each way, can answer a
share of reads with ``503 SlowDown`` (throttling), can answer one client's requests as a store
answers a request for a bucket of another region (``301 PermanentRedirect``), and can be
stopped to play a dead endpoint.

It reads just enough HTTP to see where a request starts (HTTP/1.1 without pipelining: a client
sends its next request on a connection only after the previous response), so it works with any
client, forked DataLoader workers included. Not for production use.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

_METHODS = (b"GET ", b"HEAD ", b"PUT ", b"POST ", b"DELETE ", b"OPTIONS ")
_SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_REDIRECT_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PermanentRedirect</Code>'
    b"<Message>The bucket you are attempting to access must be addressed using the specified "
    b"endpoint. Please send all future requests to this endpoint.</Message></Error>"
)


class Relay:
    """``Relay("http://127.0.0.1:5000", latency_s=0.03)``: listens on a free loopback port
    (:attr:`url`) and forwards every connection to the target.

    Args:
        target_url: the server behind the relay.
        latency_s: added before forwarding each request (the round trip a remote store adds).
        throttle: share (0-1) of GET and HEAD requests answered ``503 SlowDown`` by the relay
            itself, drawn from a generator seeded with ``seed``.
        refuse_agents: clients (User-Agent first words, e.g. ``"object_store"``) whose
            requests are all answered ``301 PermanentRedirect``, as AWS answers a client that
            signed for another region than the bucket's; the others are relayed.
    """

    def __init__(
        self,
        target_url: str,
        latency_s: float = 0.0,
        throttle: float = 0.0,
        seed: int = 0,
        refuse_agents: tuple[str, ...] = (),
    ) -> None:
        parsed = urlparse(target_url)
        self._target = (parsed.hostname or "127.0.0.1", int(parsed.port or 80))
        self.latency_s = float(latency_s)
        self.throttle = float(throttle)
        self.refuse_agents = frozenset(a.lower() for a in refuse_agents)
        self._rng = random.Random(seed)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._down = 0
        self._up = 0
        self._methods: Counter[str] = Counter()
        self._throttled = 0
        self._stopped = False
        #: The request lines seen (``"GET /bucket/key"``), in order.
        self.lines: list[str] = []
        #: The client of each of :attr:`lines` (its User-Agent's first word, lower case).
        self.agents: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    # -- counters ----------------------------------------------------------------------------
    @property
    def bytes_down(self) -> int:
        """Bytes sent to clients so far (headers included)."""
        with self._lock:
            return self._down

    @property
    def bytes_up(self) -> int:
        with self._lock:
            return self._up

    def requests(self) -> dict[str, int]:
        """Requests seen so far, by HTTP method (throttled ones included)."""
        with self._lock:
            return dict(self._methods)

    @property
    def throttled(self) -> int:
        with self._lock:
            return self._throttled

    def snapshot(self) -> dict[str, int]:
        """All counters at once: ``bytes_down``, ``bytes_up``, ``throttled`` and one entry per
        method."""
        with self._lock:
            return {
                "bytes_down": self._down,
                "bytes_up": self._up,
                "throttled": self._throttled,
                **self._methods,
            }

    def options(self, storage_options: dict[str, Any]) -> dict[str, Any]:
        """``storage_options`` pointed at this relay."""
        return {**storage_options, "endpoint_url": self.url}

    # -- relaying ----------------------------------------------------------------------------
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
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                method = next((m for m in _METHODS if data.startswith(m)), None)
                if method is not None:
                    name = method.decode().strip()
                    agent = _agent(data)
                    with self._lock:
                        self._methods[name] += 1
                        self.lines.append(" ".join(data[:300].decode("latin-1").split(" ")[:2]))
                        self.agents.append(agent)
                        self._up += len(data)
                        throttled = name in ("GET", "HEAD") and self._rng.random() < self.throttle
                        if throttled:
                            self._throttled += 1
                    if self.latency_s:
                        time.sleep(self.latency_s)
                    if agent in self.refuse_agents:
                        self._answer(client, "301 Moved Permanently", _REDIRECT_BODY, name)
                        continue
                    if throttled:
                        self._answer(client, "503 Slow Down", _SLOWDOWN_BODY, name)
                        continue
                else:
                    with self._lock:
                        self._up += len(data)
                server.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(client, server)

    def _answer(self, client: socket.socket, status: str, body: bytes, method: str) -> None:
        """Answer the request itself (its body, if any, is not read: GET and HEAD have none)."""
        header = (
            f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
        reply = header if method == "HEAD" else header + body
        with self._lock:
            self._down += len(reply)
        client.sendall(reply)

    def _responses(self, server: socket.socket, client: socket.socket) -> None:
        try:
            while data := server.recv(65536):
                client.sendall(data)
                with self._lock:
                    self._down += len(data)
        except OSError:
            pass
        finally:
            _shutdown(server, client)

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


def _shutdown(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def _agent(head: bytes) -> str:
    """The first word of a request head's User-Agent (``"object_store"``, ``"botocore"``...)."""
    text = head[:8192].decode("latin-1").lower()
    at = text.find("\r\nuser-agent:")
    if at < 0:
        return ""
    value = text[at + len("\r\nuser-agent:") :].split("\r\n", 1)[0].strip()
    return value.split("/", 1)[0].split(" ", 1)[0]
