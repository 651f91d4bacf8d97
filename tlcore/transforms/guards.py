"""Guard rails for the lazy path: a transform that cannot take a lazy (dask) array, placed
between the loader and :class:`tlcore.ComputeDaskd`, fails on the first sample with an error
naming it and the fix, instead of a MONAI traceback or, worse, silently doing nothing.

Decision (docs/lazy-path.md): tlcore never computes on the user's behalf before the crop.
Computing there would load the whole timepoint, which is what the lazy path exists to prevent.

The check reads the pipeline the loader runs in (the MONAI ``Compose`` found on the call stack),
so a pipeline built by hand, by Hydra or by the datamodule is checked alike. A pipeline that
stops before ComputeDaskd is allowed (to inspect the lazy array); its batch cannot collate.
Between the loader and the first ``ComputeDaskd`` covering a key, a transform touching that key
must be a lazy-safe crop, a tlcore transform, or a transform that is not MONAI's (user code may
be dask-aware). Any other MONAI transform fails on dask arrays or passes them through untouched
(measured: docs/lazy-path.md).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Sequence
from types import FrameType
from typing import Any

from tlcore.errors import TlcoreError

__all__ = [
    "ADDS_CHANNEL",
    "LAZY_SAFE",
    "LazyPipelineError",
    "check_pipeline",
    "enclosing_pipeline",
    "pipeline_problems",
]

#: MONAI transforms that work on a dask array and stay lazy.
LAZY_SAFE = frozenset({
    "RandSpatialCropd", "CenterSpatialCropd", "SpatialCropd", "RandScaleCropd",
    "CenterScaleCropd", "Identityd", "CopyItemsd", "DeleteItemsd", "SelectItemsd", "Lambdad",
    "RandLambdad", "Compose",
})  # fmt: skip

#: MONAI transforms that hand a dask array back unchanged, without an error.
SILENT = frozenset({"ToTensord", "EnsureTyped", "ToNumpyd", "ToCupyd", "ToDeviced", "ToPIL"})

_FIX = (
    "Move it after ComputeDaskd(keys={key!r}). Between the loader and ComputeDaskd only spatial "
    "crops belong (RandLazyCropd, RandSpatialCropd, CenterSpatialCropd, SpatialCropd): they "
    "keep the array lazy, so ComputeDaskd reads only the crop."
)


class LazyPipelineError(TlcoreError, TypeError):
    """A transform that needs pixels comes before ComputeDaskd (or ComputeDaskd is missing)."""


def enclosing_pipeline(transform: object, max_depth: int = 40) -> Sequence[Any] | None:
    """The transform list of the innermost MONAI ``Compose`` on the call stack that holds
    ``transform``; None when it is called on its own."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        members = getattr(owner, "transforms", None)
        if isinstance(members, (list, tuple)) and any(t is transform for t in members):
            return members
        members = frame.f_locals.get("transforms")
        if isinstance(members, (list, tuple)) and any(t is transform for t in members):
            return members
        frame = frame.f_back
    return None


def _keys(transform: object) -> tuple[Hashable, ...]:
    keys = getattr(transform, "keys", None)
    if keys is None:
        return ()
    return tuple(keys) if isinstance(keys, (list, tuple)) else (keys,)


def _is_compute(transform: object) -> bool:
    return type(transform).__name__ == "ComputeDaskd" and type(transform).__module__.startswith(
        "tlcore"
    )


#: MONAI transforms that add a channel axis: tlcore's loaders are channel-first already.
ADDS_CHANNEL = frozenset({"EnsureChannelFirstd", "EnsureChannelFirst", "AddChanneld", "AddChannel"})

_REMOVE = (
    "Remove it: tlcore's loaders already return channel-first arrays (C, Z, Y, X or C, Y, X), "
    "so it would add a second channel axis (after ComputeDaskd too)."
)


def pipeline_problems(
    loader: object, lazy_keys: Sequence[Hashable], pipeline: Sequence[Any]
) -> list[tuple[int, str, str]]:
    """Every misuse of the lazy keys of ``loader`` in ``pipeline``, in order, as
    ``(step, transform name, message with the fix)``; a key that never reaches a
    ``ComputeDaskd`` is one more (step = the pipeline's length)."""
    start = next(i for i, t in enumerate(pipeline) if t is loader)
    pending = set(lazy_keys)
    out: list[tuple[int, str, str]] = []
    last_crop: tuple[int, str] | None = None
    for position, transform in enumerate(pipeline[start + 1 :], start + 1):
        if not pending:
            break
        keys = set(_keys(transform))
        if _is_compute(transform):
            pending -= keys
            continue
        touched = sorted(pending & keys, key=str)
        cls = type(transform)
        if touched and cls.__name__ in LAZY_SAFE and "Crop" in cls.__name__:
            last_crop = (position, cls.__name__)
        if not touched or cls.__name__ in LAZY_SAFE or cls.__module__.startswith("tlcore"):
            if touched and cls.__module__.startswith("tlcore") and "Crop" in cls.__name__:
                last_crop = (position, cls.__name__)
            continue
        if not cls.__module__.startswith("monai"):
            continue  # the user's own transform: it may well be dask-aware
        key = touched[0]
        if cls.__name__ in ADDS_CHANNEL:
            out.append(
                (
                    position,
                    cls.__name__,
                    f"{cls.__name__} (step {position} of the "
                    f"pipeline) gets {key!r} from a channel-first loader. " + _REMOVE,
                )
            )
            continue  # fmt: skip
        what = (
            "returns the dask array unchanged, without an error: no tensor, no dtype change"
            if cls.__name__ in SILENT
            else "fails on dask arrays (or would load the whole timepoint to run)"
        )
        out.append((position, cls.__name__, (
            f"{cls.__name__} (step {position} of the pipeline) gets the lazy array {key!r} "
            f"before ComputeDaskd: it {what}. " + _FIX.format(key=key)
        )))  # fmt: skip
    if pending:
        keys_text = ", ".join(repr(str(k)) for k in sorted(pending, key=str))
        after = f" after {last_crop[1]} (step {last_crop[0]})" if last_crop else " after a crop"
        out.append((len(pipeline), "ComputeDaskd", (
            f"no ComputeDaskd computes {keys_text}: the lazy array would reach the batch "
            f"(it cannot be collated). Add ComputeDaskd(keys={keys_text}, dtype='float32')"
            f"{after}, before any other transform of {keys_text}."
        )))  # fmt: skip
    return out


def check_pipeline(loader: object, lazy_keys: Sequence[Hashable], pipeline: Sequence[Any]) -> None:
    """Raise :class:`LazyPipelineError` when ``pipeline`` misuses the lazy keys of ``loader``
    (the first misplaced transform; a missing ``ComputeDaskd`` is allowed here, to inspect the
    lazy array: :func:`pipeline_problems` reports it)."""
    for position, _name, message in pipeline_problems(loader, lazy_keys, pipeline):
        if position < len(pipeline):
            raise LazyPipelineError(message)
