"""Opening remote OME-Zarr images (S3 on loopback behind a relay adding 30 ms per request): the
ome-zarr plugin's open (``tlcore.open_lazy``: reader choice, layout, arrays, labels lookup)
against reading the same metadata with zarr's own format detection, in one run: requests and
milliseconds per image, with the ratios. Run with ``make bench``; asserts only that both read
the same shapes.

zarr's detection (``zarr.open_group``/``open_array`` without ``zarr_format``) asks for
``zarr.json``, ``.zgroup``, ``.zattrs`` and ``.zmetadata`` per group and three keys per array,
one node after another; the plugin reads the root in its format once, then the arrays and the
labels group together.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import zarr

import tlcore
from tlcore.io.relay import Relay
from tlcore.testing import write_ome_zarr

pytestmark = pytest.mark.benchmark

LATENCY_S = 0.03
STORES = 4  # distinct copies per version: each opened once, cold


def _with_zarr(url: str, options: dict[str, Any]) -> tuple[int, ...]:
    """The image's metadata read the plain way: root, each level, the labels group."""
    from tlcore.io.source import Source

    # One GET per object, as the plugin reads (s3fs sizes an object with a HEAD first unless
    # max_concurrency is 1): the difference measured is the format detection alone.
    fsspec_options = {**Source.from_any(url, options).fsspec_options(), "max_concurrency": 1}
    store = zarr.storage.FsspecStore.from_url(url, storage_options=fsspec_options,
                                              read_only=True)  # fmt: skip
    root = zarr.open_group(store=store, mode="r")
    attrs = dict(root.attrs)
    datasets = attrs.get("ome", attrs)["multiscales"][0]["datasets"]
    shapes = [zarr.open_array(store=store, path=d["path"], mode="r").shape for d in datasets]
    with contextlib.suppress(FileNotFoundError):  # absent here, as in most images
        zarr.open_group(store=store, path="labels", mode="r")
    return tuple(shapes[0])


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_remote_open_against_zarr_detection(
    s3_server: dict[str, Any], s3_new_bucket: str, tmp_path: Path, version: str
) -> None:
    import s3fs

    local = write_ome_zarr(tmp_path / "m.ome.zarr", (4, 2, 3, 64, 64), (1, 1, 1, 64, 64),
                           version=version, n_levels=2)  # fmt: skip
    fs = s3fs.S3FileSystem(**s3_server)
    urls = {}
    for way in ("zarr", "tlcore"):
        urls[way] = [f"s3://{s3_new_bucket}/v{version}/{way}{i}.ome.zarr" for i in range(STORES)]
        for url in urls[way]:
            fs.put(str(local), url.removeprefix("s3://"), recursive=True)
    relay = Relay(str(s3_server["endpoint_url"]), latency_s=LATENCY_S)
    try:
        options = relay.options(s3_server)
        tlcore.open_lazy(urls["tlcore"][0], storage_options=options)  # imports, client
        _with_zarr(urls["zarr"][0], options)
        figures = {}
        for way, open_one in (
            ("zarr", lambda u: _with_zarr(u, options)),
            ("tlcore", lambda u: tlcore.open_lazy(u, storage_options=options).shape),
        ):
            since, started = len(relay.lines), time.perf_counter()
            shapes = {open_one(url) for url in urls[way][1:]}
            seconds = (time.perf_counter() - started) / (STORES - 1)
            figures[way] = ((len(relay.lines) - since) / (STORES - 1), seconds * 1000, shapes)
    finally:
        relay.stop()
    assert figures["zarr"][2] == figures["tlcore"][2] == {(4, 2, 3, 64, 64)}
    (zr, zms, _), (tr, tms, _) = figures["zarr"], figures["tlcore"]
    print(
        f"\nremote open, OME-NGFF {version}, {LATENCY_S * 1000:.0f} ms per request: "
        f"zarr's detection {zr:.0f} requests, {zms:.0f} ms; tlcore.open_lazy {tr:.0f} "
        f"requests, {tms:.0f} ms; ratios {zr / tr:.1f}x fewer requests, {zms / tms:.1f}x faster"
    )
