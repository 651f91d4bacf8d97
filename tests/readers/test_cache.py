"""The per-process cache of opened images and its handover to other processes."""

from __future__ import annotations

import dataclasses
import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlcore.readers import cache


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_a_handover_brings_opened_images_and_leaves_out_what_cannot_travel(
    synthetic_store: Callable[..., Path], file_opens: Any
) -> None:
    good = synthetic_store("good.ome.zarr", shape=(2, 1, 4, 32, 32), chunks=(1, 1, 4, 16, 16))
    other = synthetic_store("other.ome.zarr", shape=(2, 1, 4, 32, 32), chunks=(1, 1, 4, 16, 16))
    image = cache.open_cached(good)
    expected = image.data[1].compute()
    # An image that breaks the pickling contract (a lock in its metadata) stays behind.
    broken = dataclasses.replace(cache.open_cached(other), metadata={"lock": threading.Lock()})
    key = next(k for k in cache._images if k[0] == str(other))
    cache._images[key] = broken

    blob = pickle.dumps(cache.handover([good, other]))
    cache.clear()
    handed = pickle.loads(blob)  # what a spawned worker does when it unpickles the dataset
    assert [k[0] for k, _ in handed.entries] == [str(good)]

    file_opens.watch(good)
    again = cache.open_cached(good)  # from the handover: no reader choice, no metadata read
    assert again is handed.entries[0][1]  # the handed-over image itself, not a new opening
    assert again.uri == image.uri and again.shape == image.shape
    assert np.array_equal(again.data[1].compute(), expected)
    assert file_opens.paths and file_opens.chunk_files() == set(file_opens.paths)
    assert not any(k[0] == str(other) for k in cache._images)  # opened again when needed


def test_a_handover_names_only_the_paths_asked_for(
    synthetic_store: Callable[..., Path],
) -> None:
    a = synthetic_store("a.ome.zarr", shape=(1, 1, 2, 16, 16), chunks=(1, 1, 2, 16, 16))
    b = synthetic_store("b.ome.zarr", shape=(1, 1, 2, 16, 16), chunks=(1, 1, 2, 16, 16))
    cache.open_cached(a)
    cache.open_cached(b)
    assert [k[0] for k, _ in cache.handover([a]).entries] == [str(a)]
    assert len(cache.handover()) == 2


def test_a_file_rewritten_on_disk_is_opened_again_not_read_through_stale_offsets(
    tmp_path: Path,
) -> None:
    """The cached image of a TIFF describes its pages' offsets: after the file is rewritten
    (here in place, same inode, other pixels and another shape), reading through it would give
    plausible garbage. The cache sees the change and opens the file again."""
    import os

    import tifffile

    path = tmp_path / "movie.tif"
    first = np.arange(2 * 8 * 16, dtype=np.uint16).reshape(2, 8, 16)
    tifffile.imwrite(path, first, metadata={"axes": "ZYX"})
    image = cache.open_cached(path)
    assert cache.open_cached(path) is image  # unchanged: the same image, no second opening
    assert np.array_equal(np.asarray(image.data.compute()).reshape(first.shape), first)

    second = (np.arange(5 * 16 * 32, dtype=np.uint16) * 7).reshape(5, 16, 32)
    inode = path.stat().st_ino
    written = tmp_path / "second.tif"
    tifffile.imwrite(written, second, metadata={"axes": "ZYX"})
    with open(path, "r+b") as out:  # rewrite in place: the same inode, new bytes
        out.truncate(0)
        out.write(written.read_bytes())
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert path.stat().st_ino == inode

    again = cache.open_cached(path)
    assert again is not image
    assert np.array_equal(np.asarray(again.data.compute()).reshape(second.shape), second)


def test_a_store_appended_in_place_is_opened_again_with_its_new_timepoints(
    synthetic_store: Callable[..., Path],
) -> None:
    """A live acquisition appends timepoints to an OME-Zarr image: only the array's metadata
    (``0/zarr.json``) changes, not the store's root. Both the opened-image cache and the
    plugin's parsed metadata must see it: the image opened again has the new shape and pixels
    (an image opened before keeps what it was opened with)."""
    import zarr

    import tlcore

    store = synthetic_store(shape=(3, 1, 2, 16, 16), chunks=(1, 1, 2, 16, 16))
    image = cache.open_cached(store)
    assert cache.open_cached(store) is image
    assert tlcore.open_lazy(store).shape[0] == 3
    array = zarr.open_array(str(store / "0"), mode="r+")
    array.resize((5, 1, 2, 16, 16))
    array[3:] = 9
    again = cache.open_cached(store)
    assert again is not image and again.shape[0] == 5
    assert (np.asarray(again.data[4].compute()) == 9).all()
    direct = tlcore.open_lazy(store)  # the plugin's own cache of parsed metadata
    assert direct.shape[0] == 5 and (np.asarray(direct.data[3].compute()) == 9).all()
    assert image.shape[0] == 3


def test_a_handed_over_image_of_a_rewritten_file_is_opened_again(
    synthetic_store: Callable[..., Path],
) -> None:
    """The handover carries what the file looked like when the parent opened it: a worker
    that starts after the store was written anew opens it again."""
    import shutil

    store = synthetic_store("s.ome.zarr", shape=(1, 1, 2, 16, 16), chunks=(1, 1, 2, 16, 16))
    image = cache.open_cached(store)
    blob = pickle.dumps(cache.handover([store]))
    cache.clear()
    moved = store.with_name("old.ome.zarr")
    shutil.copytree(store, moved)
    shutil.rmtree(store)
    shutil.copytree(moved, store)  # the same content, written anew: a new folder
    handed = pickle.loads(blob)
    assert len(handed) == 1
    again = cache.open_cached(store)
    assert again is not handed.entries[0][1]
    assert again.shape == image.shape
