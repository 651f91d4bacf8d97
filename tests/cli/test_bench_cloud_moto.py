"""The S3 server of ``tlcore bench cloud`` (:mod:`tlcore.cli.bench.cloud_moto`): moto serving a
range of a large object without copying the object serves the same bytes as stock moto, for
ranges, whole objects and an object written again."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("moto.server")


def test_the_bench_server_serves_the_stored_bytes() -> None:
    import boto3  # type: ignore[import-untyped]

    from tlcore.cli.bench.cloud_moto import moto_server

    big = os.urandom(7 * 2**20)  # above moto's default in-memory size: kept in memory here
    with moto_server() as url:
        s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="t",
                          aws_secret_access_key="t", region_name="us-east-1")  # fmt: skip
        s3.create_bucket(Bucket="bench-moto")
        s3.put_object(Bucket="bench-moto", Key="big", Body=big)
        for start, end in [(0, 0), (1000, 2023), (5 * 2**20 + 3, 7 * 2**20 - 1)]:
            got = s3.get_object(Bucket="bench-moto", Key="big", Range=f"bytes={start}-{end}")
            assert got["Body"].read() == big[start : end + 1]
        assert s3.get_object(Bucket="bench-moto", Key="big")["Body"].read() == big
        again = big[::-1]  # a new value for a key served before: no stale shared bytes
        s3.put_object(Bucket="bench-moto", Key="big", Body=again)
        got = s3.get_object(Bucket="bench-moto", Key="big", Range="bytes=10-19")["Body"].read()
        assert got == again[10:20]
        assert s3.get_object(Bucket="bench-moto", Key="big")["Body"].read() == again
