"""Batches: samples stacked per key, small tensors carried inside the pickle from workers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def _stack(key: str, values: list[torch.Tensor], n_t: int | None, fold_time: bool) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise ValueError(
            f"collate: {key!r} has different shapes in one batch {sorted(shapes)}: crop to a "
            "fixed patch_shape (or pad) before batching"
        )
    if n_t is not None:
        values = [v.reshape(n_t, v.shape[0] // n_t, *v.shape[1:]) for v in values]
    batch = torch.stack(values)
    if n_t is not None and fold_time:
        batch = batch.reshape(-1, *batch.shape[2:])
    return batch


#: Tensors up to this size travel from a worker to the main process inside the pickle.
INLINE_TENSOR_BYTES = 64 * 2**10


class Batch(dict[str, Any]):
    """A collated batch: a plain ``dict`` of tensors and lists to its users.

    Sent from a DataLoader worker, its small tensors (``T``, ``row``, the extra columns...: at
    most :data:`INLINE_TENSOR_BYTES` each) travel inside the pickle instead of through one
    shared-memory file each: every shared-memory tensor costs the main process a file
    descriptor round trip to the worker, measured at about 0.25 ms, so eight small ones cost
    more than moving a 2 MiB crop. Image tensors still go through shared memory; a MONAI
    ``MetaTensor`` keeps its type and metadata, with its small ``affine`` inline too.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_batch, ({k: _inline(v) for k, v in self.items()},))


class _InlineTensor:
    """A small CPU tensor pickled by value (numpy bytes), rebuilt as a tensor."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_tensor, (self.array,))


class _InlineMetaTensor:
    """A MONAI ``MetaTensor`` pickled as its plain tensor (shared memory when large) plus its
    metadata with small tensors by value (its 4 x 4 ``affine`` would take a shared-memory
    file of its own), rebuilt as a ``MetaTensor``."""

    __slots__ = ("applied", "is_batch", "meta", "tensor")

    def __init__(self, value: Any) -> None:
        self.tensor = value.as_tensor()
        self.meta = {k: _inline(v) for k, v in value.meta.items()}
        self.applied = list(value.applied_operations)
        self.is_batch = bool(value.is_batch)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle_meta_tensor, (self.tensor, self.meta, self.applied, self.is_batch))


def _unpickle_meta_tensor(
    tensor: torch.Tensor, meta: dict[str, Any], applied: list[Any], is_batch: bool
) -> Any:
    from monai.data import MetaTensor

    out = MetaTensor(tensor, meta=meta, applied_operations=applied)
    out.is_batch = is_batch
    return out


def _inline(value: Any) -> Any:
    if type(value).__name__ == "MetaTensor" and type(value).__module__.startswith("monai."):
        return _InlineMetaTensor(value)
    if (
        type(value) is torch.Tensor  # subclasses (MetaTensor) keep their own pickling
        and value.device.type == "cpu"
        and not value.requires_grad
        and value.dtype not in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)
        and value.numel() * value.element_size() <= INLINE_TENSOR_BYTES
    ):
        return _InlineTensor(value.numpy())
    return value


def _unpickle_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


def _unpickle_batch(items: dict[str, Any]) -> Batch:
    return Batch(items)


def collate_samples(batch: Sequence[Mapping[str, Any]], fold_time: bool = False) -> Batch:
    """Batch samples: images ``B, C, (Z,) Y, X`` for one timepoint per sample and
    ``B, T, C, (Z,) Y, X`` for several (or ``B*T, C, ...`` with ``fold_time``); ``T`` as a
    ``B`` or ``B, T`` integer tensor and ``T_seconds`` likewise in float64 (NaN where unknown);
    numbers as tensors; strings, metadata dicts and anything else as lists. The result is a
    :class:`Batch`, a ``dict`` that crosses from workers to the main process cheaply."""
    keys = list(batch[0])
    out = Batch()
    for key in keys:
        values = [sample[key] for sample in batch]
        first = values[0]
        if isinstance(first, torch.Tensor):
            meta = batch[0].get(f"{key}_meta")
            n_t = meta.get("n_timepoints") if isinstance(meta, Mapping) else None
            out[key] = _stack(key, list(values), n_t, fold_time)
        elif isinstance(first, np.ndarray):
            out[key] = _stack(key, [torch.as_tensor(v) for v in values], None, fold_time)
        elif key == "T":
            out[key] = torch.as_tensor(values, dtype=torch.int64)
        elif key == "T_seconds":
            out[key] = torch.as_tensor(values, dtype=torch.float64)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = torch.as_tensor(values)
        else:
            out[key] = list(values)
    return out
