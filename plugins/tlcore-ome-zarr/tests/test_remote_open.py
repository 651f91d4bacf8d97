"""What opening a remote OME-Zarr image costs in requests, against a real S3 server (moto on
loopback) behind :class:`tlcore.io.relay.Relay`, which records every request.

The root group is read once in its zarr format (``zarr.json``; ``.zgroup`` and ``.zattrs``
only when it is absent), every node below in that format, an image's arrays with its
``labels`` group: no HEAD, no listing, no object read twice. Before, zarr's format detection
probed four keys per group and three per array, and an existence check sent a HEAD: 41
requests for the v0.5 image here, 43 for the v0.4 one (7 and 15 now).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import tlcore
from tlcore.io.relay import Relay
from tlcore.testing import write_ome_zarr

SHAPE = (3, 2, 2, 32, 32)
CHUNKS = (1, 1, 1, 32, 32)
#: At most this many requests to open the image below (2 levels, one label image of 2 levels):
#: v0.5 the root's, the 2 arrays' and the labels group's zarr.json, then the label image's
#: group and its 2 arrays; v0.4 the root's zarr.json (absent), .zgroup and .zattrs, then two
#: objects per node.
REQUESTS = {"0.5": 7, "0.4": 15}
METADATA = {"zarr.json", ".zgroup", ".zattrs", ".zarray"}


def _image(folder: Path, version: str) -> Path:
    """A 2-level OME-Zarr image with a label image ``cells`` on its grid."""
    path = write_ome_zarr(folder / "m.ome.zarr", SHAPE, CHUNKS, version=version, n_levels=2,
                          seed=3)  # fmt: skip
    fmt = 3 if version == "0.5" else 2
    labels = zarr.open_group(str(path / "labels"), mode="w-", zarr_format=fmt)
    names = {"labels": ["cells"]}
    labels.attrs.update({"ome": {"version": "0.5", **names}} if fmt == 3 else names)
    t, _, z, y, x = SHAPE
    write_ome_zarr(path / "labels" / "cells", (t, 1, z, y, x), CHUNKS, version=version,
                   n_levels=2, dtype="int32", seed=4)  # fmt: skip
    return path


def _upload(s3_server: dict[str, Any], local: Path, prefix: str) -> str:
    import s3fs

    # A prefix per parameter: s3_new_bucket's names are cut to 50 characters, so both
    # parameters of a test get the same bucket.
    s3fs.S3FileSystem(**s3_server).put(str(local), f"{prefix}/m.ome.zarr", recursive=True)
    return f"s3://{prefix}/m.ome.zarr"


def _same_image(got: tlcore.LazyImage, want: tlcore.LazyImage) -> None:
    for name in ("shape", "dtype", "scene", "scene_name", "level", "time_axis", "pixel_sizes",
                 "channel_names", "metadata", "origin"):  # fmt: skip
        assert getattr(got, name) == getattr(want, name), name
    assert got.data.chunks == want.data.chunks
    assert np.array_equal(got.data.compute(), want.data.compute())
    assert sorted(got.labels) == sorted(want.labels) == ["cells"]
    assert np.array_equal(got.labels["cells"].compute(), want.labels["cells"].compute())


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_opening_a_remote_image_reads_each_metadata_object_once(
    s3_server: dict[str, Any], s3_new_bucket: str, relay: Relay, tmp_path: Path, version: str
) -> None:
    local = _image(tmp_path, version)
    url = _upload(s3_server, local, f"{s3_new_bucket}/v{version}")
    options = relay.options(s3_server)
    since = len(relay.lines)
    image = tlcore.open_lazy(url, storage_options=options)
    sent = relay.lines[since:]
    shown = "\n".join(sent)
    assert all(line.startswith("GET /") for line in sent), shown  # no HEAD
    assert not any("list-type" in line for line in sent), shown  # no listing
    assert max(Counter(sent).values()) == 1, shown  # no object read twice
    assert all(line.rsplit("/", 1)[-1] in METADATA for line in sent), shown  # no chunk
    assert len(sent) <= REQUESTS[version], shown
    # The zarr format, from the root first.
    assert sent[0] == f"GET /{s3_new_bucket}/v{version}/m.ome.zarr/zarr.json"
    # The other hooks reuse what opening read: no request.
    since = len(relay.lines)
    levels = tlcore.levels(url, storage_options=options)
    assert tlcore.list_scenes(url, storage_options=options) == tlcore.list_scenes(local)
    assert relay.lines[since:] == []
    assert levels == tlcore.levels(local)
    _same_image(image, tlcore.open_lazy(local))
    _same_image(tlcore.open_lazy(url, level=1, storage_options=options),
                tlcore.open_lazy(local, level=1))  # fmt: skip


def test_remote_stores_that_cannot_be_opened_are_named(
    s3_server: dict[str, Any], s3_new_bucket: str, relay: Relay, tmp_path: Path
) -> None:
    local = _image(tmp_path, "0.5")
    url = _upload(s3_server, local, s3_new_bucket)
    options = relay.options(s3_server)
    missing = url.replace("m.ome.zarr", "nothing-here.ome.zarr")
    since = len(relay.lines)
    with pytest.raises(tlcore.NoReaderError) as info:
        tlcore.open_lazy(missing, storage_options=options)
    assert missing in str(info.value) and "not a zarr store" in str(info.value)
    # zarr.json, then .zgroup and .zattrs, then .zarray (is it an array?): GETs only
    assert len(relay.lines[since:]) <= 4 and all(
        line.startswith("GET /") for line in relay.lines[since:]
    ), relay.lines[since:]
    inside = f"{url}/0"
    with pytest.raises(tlcore.NoReaderError, match="one zarr array inside a store"):
        tlcore.open_lazy(inside, storage_options=options)
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    broken = url.replace("m.ome.zarr", "broken.ome.zarr")
    fs.pipe(f"{broken.removeprefix('s3://')}/zarr.json", b"{ this is not json")
    with pytest.raises(tlcore.NoReaderError) as info:
        tlcore.open_lazy(broken, storage_options=options)
    assert broken in str(info.value) and "unreadable zarr metadata" in str(info.value)
