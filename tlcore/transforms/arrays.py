"""Small helpers shared by the transforms: dask or not, dtypes, dask's scheduler in and out of
DataLoader workers, the eager whole-image read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def is_dask(x: Any) -> bool:
    return hasattr(x, "dask") and hasattr(x, "compute")


#: From this many output bytes on, :class:`tlcore.ComputeDaskd` converts chunk by chunk.
CHUNKWISE_BYTES = 32 * 2**20


def read_whole(array: Any, dtype: np.dtype[Any] | None, scheduler: str | None = None) -> np.ndarray:
    """The eager path: the whole selection, read block by block into one preallocated array
    (so the peak is the image once in ``dtype`` plus a chunk per thread, not the image in its
    stored dtype plus the converted copy plus dask's pieces)."""
    import dask.array as da

    out = np.empty(array.shape, dtype=dtype or array.dtype)
    da.store(array, out, lock=False, scheduler=scheduler or default_scheduler())
    return out


def torch_dtype_for(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype a tensor gets without an explicit one: uint16/uint32 widen losslessly to
    int32/int64 (torch has no unsigned 16/32-bit tensors MONAI can use); others stay."""
    if dtype == np.uint16:
        return np.dtype(np.int32)
    if dtype == np.uint32:
        return np.dtype(np.int64)
    return np.dtype(dtype)


def manifest_cell(value: Any, default: Any) -> Any:
    """A manifest cell, or the default when the cell is missing or empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return default
    if isinstance(value, str) and not value.strip():
        return default
    return value


def numpy_dtype(dtype: Any) -> np.dtype[Any] | None:
    """``"float16"``, ``numpy.float32``, ``torch.float32`` or None -> a numpy dtype or None."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return np.dtype(torch.empty((), dtype=dtype).numpy().dtype)
    if isinstance(dtype, str) and dtype.startswith("torch."):
        return numpy_dtype(getattr(torch, dtype[len("torch.") :]))
    if isinstance(dtype, str) and dtype.startswith("numpy."):
        dtype = dtype[len("numpy.") :]
    resolved: np.dtype[Any] = np.dtype(dtype)
    return resolved


def default_scheduler() -> str:
    """Synchronous inside DataLoader workers (the threaded scheduler can hang after fork),
    threads in the main process."""
    info = torch.utils.data.get_worker_info()
    return "synchronous" if info is not None else "threads"
