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
