"""ComputeDaskd: the lazy crop read (as one region where it can be) into a MONAI MetaTensor
with the sample's metadata and crop box.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from tlcore.lazy import chunkcache
from tlcore.lazy.array import LazyArray
from tlcore.lazy.compute import compute
from tlcore.transforms.arrays import (
    CHUNKWISE_BYTES,
    default_scheduler,
    is_dask,
    numpy_dtype,
    torch_dtype_for,
)
from tlcore.transforms.meta import meta_key, monai_box, tensor_meta, with_box

#: Working memory of a converted eager read, as a fraction of the output's bytes.
BATCH_FRACTION = 0.125


def _read_planewise(value: Any, dtype: np.dtype[Any], scheduler: str) -> np.ndarray:
    """``value`` read a few planes (last two axes) at a time, each batch through tlcore's
    one-region read, and converted into a preallocated array of ``dtype``. A batch holds at
    most :data:`BATCH_FRACTION` of the output's bytes (one plane at least), so the peak stays
    under 1.2x the output while each read is large enough that its fixed cost does not count."""
    out = np.empty(value.shape, dtype=dtype)
    lead = tuple(value.shape[:-2])
    if not lead:
        out[...] = compute(value, scheduler)
        return out
    plane = int(np.prod(value.shape[-2:])) * np.dtype(value.dtype).itemsize
    step = max(1, min(lead[-1], int(BATCH_FRACTION * out.nbytes) // max(1, plane)))
    for outer in np.ndindex(*lead[:-1]):
        for start in range(0, lead[-1], step):
            index = (*outer, slice(start, start + step))
            out[index] = compute(value[index], scheduler)
    return out


class WholeImageWarning(UserWarning):
    """ComputeDaskd is about to read a whole (large) image: no crop came before it."""


class ComputeDaskd(MapTransform):
    r"""Compute lazy arrays (reading only the chunks they still cover) into MONAI
    ``MetaTensor``\ s with the sample's metadata.

    ``dtype`` converts after reading (``"float32"``, ``"float16"``, ``numpy.float32``,
    ``torch.float32``...); without it ``uint16``/``uint32`` widen losslessly to ``int32``/
    ``int64`` (torch has no usable unsigned types). ``scheduler`` is dask's: by default
    ``"synchronous"`` inside DataLoader workers (dask's threaded scheduler can hang in forked
    workers) and ``"threads"`` in the main process.

    The tensor's ``.meta`` (and ``d["<key>_meta"]``) holds the source path, scene, level,
    timepoints, pixel sizes, and the crop box in the loaded level's grid (``crop_start``,
    ``crop_size``) and in level-0 voxels (``crop_start_level0``, ``crop_size_level0``),
    whichever crop chose it: tlcore's, MONAI's spatial crops on the lazy array (tracked by
    :class:`tlcore.lazy.array.LazyArray`), or MONAI's crops on an eager MetaTensor (read from
    its ``applied_operations``). Where no box can be known (the lazy array went through
    something else than slicing) ``crop_start`` is None rather than a guess.

    Arrays that are already computed (numpy, torch) get the same dtype handling, so the
    transform is safe in a pipeline whose loader is eager; other values pass through.

    A lazy read of at least :data:`tlcore.transforms.arrays.CHUNKWISE_BYTES` output bytes that
    needs a conversion is decoded and converted a few planes at a time into the output array (peak:
    the output plus an eighth of it, or one plane); smaller ones (crops) are read as one region and
    converted after.

    A lazy array that was never cropped and holds more than ``warn_bytes`` stored bytes gives
    a :class:`WholeImageWarning` with the bytes about to be read (None: never warn).
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: Any = None,
        scheduler: str | None = None,
        allow_missing_keys: bool = False,
        *,
        warn_bytes: int | None = 256 * 2**20,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dtype = dtype
        self.scheduler = scheduler
        self.warn_bytes = warn_bytes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        dtype = numpy_dtype(self.dtype)
        scheduler = self.scheduler or default_scheduler()
        for key in self.key_iterator(d):
            value = d[key]
            box: tuple[int, ...] | None = None
            tracked = False
            if is_dask(value):
                if isinstance(value, LazyArray):
                    tracked, box = True, value.origin
                    self._warn_whole(value, d.get(meta_key(key)))
                    chunkcache.stats.crop(int(value.size) * value.source_itemsize)
                target = dtype if dtype is not None else torch_dtype_for(np.dtype(value.dtype))
                if target != value.dtype and int(value.size) * target.itemsize >= CHUNKWISE_BYTES:
                    # A large read that is converted: decode and convert a few planes at a
                    # time into the output, so the peak is about the output, not the
                    # stored-dtype image plus its converted copy.
                    value = _read_planewise(value, target, scheduler)
                else:
                    value = compute(value, scheduler)
            elif isinstance(value, MetaTensor):
                box = monai_box(value)
                tracked = box is not None
            elif not isinstance(value, (np.ndarray, torch.Tensor)):
                continue
            array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if dtype is not None and array.dtype != dtype:
                array = array.astype(dtype)
            elif array.dtype == np.uint16 or array.dtype == np.uint32:
                # torch has no unsigned 16/32-bit tensors that MONAI can use: widen losslessly.
                array = array.astype(torch_dtype_for(array.dtype))
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            meta = d.get(meta_key(key))
            if isinstance(meta, dict):
                meta = with_box(meta, box, tracked, tuple(int(n) for n in array.shape[1:]))
                d[meta_key(key)] = meta
                d[key] = MetaTensor(tensor, meta=tensor_meta(meta))
            else:
                d[key] = MetaTensor(tensor)
        return d

    def _warn_whole(self, value: LazyArray, meta: Any) -> None:
        nbytes = int(value.size) * value.source_itemsize
        if self.warn_bytes is None or not value.is_whole or nbytes <= self.warn_bytes:
            return
        where = meta.get("uri", "an image") if isinstance(meta, dict) else "an image"
        warnings.warn(
            f"ComputeDaskd is about to read the whole of {where}: {nbytes:,} bytes "
            f"({nbytes / 2**30:.2f} GiB), shape {tuple(value.shape)}. Put a spatial crop "
            "(RandLazyCropd, RandSpatialCropd) before ComputeDaskd to read only the crop, or "
            "pass warn_bytes=None if the whole image is meant.",
            WholeImageWarning,
            stacklevel=3,
        )
