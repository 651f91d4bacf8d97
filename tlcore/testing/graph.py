"""Looking inside a lazy image's dask graph: the ArrayReader it reads through, and pixel data
embedded in it (a sign that open_lazy read eagerly)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from tlcore.lazy.reader import ArrayReader


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, (tuple, list)):
        yield from node
    elif isinstance(node, dict):
        yield from node.values()
    else:
        for attr in ("value", "args"):  # dask's DataNode.value, Task.args
            if hasattr(node, attr) and not callable(getattr(node, attr)):
                yield getattr(node, attr)
        kwargs = getattr(node, "kwargs", None)
        if isinstance(kwargs, dict):
            yield from kwargs.values()


def embedded_bytes(node: Any, depth: int = 0) -> int:
    """Bytes of numpy arrays held in a dask graph value (old-style tuples or Task objects)."""
    if isinstance(node, np.ndarray):
        return int(node.nbytes)
    if depth > 8 or isinstance(node, (str, bytes)):
        return 0
    return sum(embedded_bytes(child, depth + 1) for child in _children(node))


def _find_reader(node: Any, depth: int = 0) -> ArrayReader | None:
    if isinstance(node, ArrayReader):
        return node
    if depth > 8 or isinstance(node, (str, bytes, np.ndarray)):
        return None
    for child in _children(node):
        found = _find_reader(child, depth + 1)
        if found is not None:
            return found
    return None


def first_task(data: Any) -> Any:
    """The graph value that computes the array's first chunk."""
    keys = data.__dask_keys__()
    while isinstance(keys, list):
        keys = keys[0]
    return data.__dask_graph__()[keys]


def array_reader(data: Any) -> ArrayReader | None:
    """The :class:`ArrayReader` a dask array built with :func:`tlcore.lazy.daskarray.as_dask` reads
    through, or None (the plugin built its array another way)."""
    try:
        return _find_reader(first_task(data))
    except (KeyError, IndexError, TypeError):
        return None
