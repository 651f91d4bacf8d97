"""obstore reads of S3 (:mod:`tlcore.io.objstore`): which storage options map, and byte ranges
of one object read through obstore against a real S3 server (moto on loopback) behind
:class:`tlcore.io.relay.Relay`. The obstore reads run in a fresh Python process acting as a
DataLoader worker: this test process must not import obstore (a process forked after an
obstore user hangs, and the DataLoader tests fork workers from it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tlcore.io import clients
from tlcore.io.objstore import file_store, s3_store_kwargs
from tlcore.io.relay import Relay


def test_only_options_with_a_clean_equivalent_map_to_obstore() -> None:
    base = {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s",
            "client_kwargs": {"region_name": "eu-west-1"}, "tlcore_retries": 2,
            "config_kwargs": {"connect_timeout": 10, "read_timeout": 60,
                              "retries": {"max_attempts": 5}}}  # fmt: skip
    kw = s3_store_kwargs("s3://b/a/movie.ome.zarr", base)
    assert kw is not None
    assert (kw["bucket"], kw["prefix"]) == ("b", "a/movie.ome.zarr")
    assert kw["config"] == {"region": "eu-west-1", "endpoint": "http://127.0.0.1:9"}
    assert kw["client_options"] == {"connect_timeout": "10s", "read_timeout": "60s",
                                    "allow_http": True}  # fmt: skip
    assert kw["retry_config"] == {"max_retries": 0}  # tlcore's retries, not obstore's
    assert kw["credential_provider"]()["access_key_id"] == "k"
    anon = s3_store_kwargs("s3://b/m.zarr", {"anon": True, "endpoint_url": "http://h:1"})
    assert anon is not None and anon["config"]["skip_signature"] is True
    for other in (
        {**base, "requester_pays": True},
        {**base, "client_kwargs": {"region_name": "x", "verify": False}},
        {**base, "config_kwargs": {"s3": {"addressing_style": "virtual"}}},
        {k: v for k, v in base.items() if k not in ("key", "secret")},  # botocore's chain
    ):
        assert s3_store_kwargs("s3://b/m.zarr", other) is None, other
    assert s3_store_kwargs("gs://b/m.zarr", base) is None


def test_a_process_that_is_not_a_worker_reads_files_through_s3fs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(clients.ENV, "obstore")
    options = {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s"}
    assert not clients._worker
    assert file_store("s3://b/x.tif", options) is None  # no obstore store, nothing imported


_WORKER = """
import json, sys
from tlcore.io import clients, objstore
clients.mark_worker()
uri, options, pairs = json.loads(sys.argv[1])
found = objstore.file_store(uri, options)
assert found is not None, "obstore refused"
store, key, _ = found
got = objstore.cat_ranges(store, key, [a for a, _ in pairs], [b for _, b in pairs],
                          uri=uri, options=options)
print(json.dumps([
    {"error": type(d).__name__, "text": str(d)} if isinstance(d, BaseException)
    else {"hex": bytes(d).hex()} for d in got
]))
"""


def _in_worker(uri: str, options: dict[str, Any], pairs: list[tuple[int, int]]) -> list[Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_WORKER), json.dumps([uri, options, pairs])],
        capture_output=True, text=True, timeout=60, env={**os.environ, clients.ENV: "obstore"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out: list[Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


@pytest.fixture
def blob(s3_server: dict[str, Any], s3_new_bucket: str) -> tuple[str, bytes]:
    import s3fs

    data = bytes(range(256)) * 4096  # 1 MiB
    s3fs.S3FileSystem(**s3_server).pipe(f"{s3_new_bucket}/x.bin", data)
    return f"s3://{s3_new_bucket}/x.bin", data


def test_ranges_of_an_object_are_read_exactly_each_with_one_obstore_get(
    s3_server: dict[str, Any], blob: tuple[str, bytes], relay: Relay
) -> None:
    uri, data = blob
    pairs = [(0, 10), (1000, 300_000), (500_000, 500_001), (len(data) - 7, len(data))]
    since = len(relay.lines)
    got = _in_worker(uri, relay.options(s3_server), pairs)
    assert [bytes.fromhex(g["hex"]) for g in got] == [data[a:b] for a, b in pairs]
    # one GET per range as given (obstore's get_ranges would have merged the close ones)
    lines, agents = relay.lines[since:], relay.agents[since:]
    assert len(lines) == len(pairs) and all(line.startswith("GET ") for line in lines)
    assert set(agents) == {"object_store"}


def test_a_missing_object_is_named_and_throttling_is_retried(
    s3_server: dict[str, Any], blob: tuple[str, bytes]
) -> None:
    uri, data = blob
    # half of the requests answered 503 SlowDown: obstore's own retries are off, so the
    # ranges arrive only through tlcore's per-request retries
    throttling = Relay(str(s3_server["endpoint_url"]), throttle=0.5, seed=5)
    try:
        options = {**throttling.options(s3_server), "tlcore_retries": 8}
        pairs = [(i * 1000, i * 1000 + 100) for i in range(8)]
        got = _in_worker(uri, options, pairs)
        assert throttling.throttled > 0
    finally:
        throttling.stop()
    assert [bytes.fromhex(g["hex"]) for g in got] == [data[a:b] for a, b in pairs]
    missing = uri.rsplit("/", 1)[0] + "/gone.bin"
    (error,) = _in_worker(missing, dict(s3_server), [(0, 10)])
    assert error["error"] == "FileNotFoundError" and missing in error["text"]


_TRIAL = """
import json, sys
from tlcore.io import clients, objstore
clients.mark_worker()
uri, options, pairs = json.loads(sys.argv[1])
store, key, _ = objstore.file_store(uri, options)
trial = objstore.Trial(uri)
got = objstore.cat_ranges(store, key, [a for a, _ in pairs], [b for _, b in pairs],
                          uri=uri, options=options, trial=trial)
print(json.dumps([type(d).__name__ for d in got] + [trial.proven]))
"""


def test_a_first_read_obstore_alone_fails_is_a_doubt_sent_once(
    s3_server: dict[str, Any], blob: tuple[str, bytes]
) -> None:
    uri, _ = blob
    # The relay answers obstore as AWS answers a client signed for another region (301
    # PermanentRedirect, which obstore cannot follow) and relays everyone else.
    refusing = Relay(str(s3_server["endpoint_url"]), refuse_agents=("object_store",))
    try:
        pairs = [(0, 10), (100, 200)]
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_TRIAL),
             json.dumps([uri, refusing.options(s3_server), pairs])],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, clients.ENV: "obstore"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        *kinds, proven = json.loads(done.stdout.strip().splitlines()[-1])
        # not retried (one request per range): the caller asks s3fs at once
        assert kinds == ["ObstoreDoubt"] * 2 and proven is False
        assert refusing.agents == ["object_store"] * 2
    finally:
        refusing.stop()


def test_only_failures_s3fs_might_not_share_are_doubts() -> None:
    from tlcore.io.objstore import Trial, may_be_obstore_only

    redirect = Exception("Generic S3 error: Received redirect without LOCATION, this normally "
                         "indicates an incorrectly configured region")  # fmt: skip
    for shared in (
        FileNotFoundError("gone"),
        Exception("Server returned non-2xx status code: 503 Service Unavailable: SlowDown"),
        Exception("Server returned non-2xx status code: 500 Internal Server Error"),
        Exception("HTTP error: error sending request"),
        Exception("operation timed out"),
    ):
        assert not may_be_obstore_only(shared), shared
    assert may_be_obstore_only(redirect)
    trial = Trial("s3://b/x")
    assert type(trial.check(redirect)).__name__ == "ObstoreDoubt"
    trial.passed()  # once obstore has read the store, its errors are its own
    assert trial.check(redirect) is redirect


def test_a_failed_read_raises_with_the_clients_error_still_chained() -> None:
    """A read's error keeps the client's error it was raised from (a refusal raised as
    PermissionError from obstore's PermissionDeniedError); on trial, the doubt chains to it."""
    from tlcore.io.objstore import ObstoreDoubt, Trial

    client = Exception("Generic S3 error: access denied by the store's policy")
    try:
        raise PermissionError("s3://b/x: refused") from client
    except PermissionError as exc:
        refused = exc
    trial = Trial("s3://b/x")
    with pytest.raises(ObstoreDoubt) as doubt:
        trial.fail(refused)
    assert doubt.value.__cause__ is refused
    trial.passed()
    with pytest.raises(PermissionError) as again:
        trial.fail(refused)
    assert again.value is refused and again.value.__cause__ is client
