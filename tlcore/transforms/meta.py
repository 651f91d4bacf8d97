"""Where a sample keeps its metadata, and the crop box recorded in it (in the loaded level's
grid and in level-0 voxels), whichever crop cut the image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monai.data import MetaTensor

from tlcore.vocabulary import meta_key

__all__ = ["TENSOR_META", "meta_key", "monai_box", "tensor_meta", "with_box"]


def monai_box(value: MetaTensor) -> tuple[int, ...] | None:
    """The box MONAI's crops cut from an eager image, from the tensor's applied operations;
    None when anything else than crops was applied (or nothing was recorded)."""
    ops = list(getattr(value, "applied_operations", []) or [])
    start = [0] * (value.ndim - 1)
    for op in ops:
        cropped = (op.get("extra_info") or {}).get("cropped")
        if cropped is None or len(cropped) != 2 * len(start):
            return None
        start = [s + int(c) for s, c in zip(start, cropped[0::2])]
    return tuple(start)


def with_box(
    meta: dict[str, Any], box: tuple[int, ...] | None, tracked: bool, size: tuple[int, ...]
) -> dict[str, Any]:
    """``meta`` with the crop box of the computed array (``box``: start in the loaded level's
    grid, known when ``tracked``), in level and level-0 pixels."""
    out = dict(meta)
    if tracked and box is not None:
        start: tuple[int, ...] | None = tuple(int(b) for b in box)
    elif tuple(meta.get("crop_size", ())) == size:
        start = meta.get("crop_start")  # recorded by tlcore's crop, nothing cut since
    else:
        start = None  # cut by something that records no box: unknown, not guessed
    out["crop_start"] = start
    out["crop_size"] = size
    scale = tuple(meta.get("downsampling", ())) or (1.0,) * len(size)
    scale = scale[-len(size) :]
    out["crop_start_level0"] = (
        None if start is None else tuple(round(s * f) for s, f in zip(start, scale))
    )
    out["crop_size_level0"] = tuple(round(n * f) for n, f in zip(size, scale))
    return out


TENSOR_META = (
    "path", "uri", "reader", "scene", "level", "timepoints", "time_s", "n_timepoints",
    "n_channels", "channels", "pixel_sizes", "image_shape", "crop_start", "crop_size",
    "crop_start_level0", "crop_size_level0", "downsampling",
)  # fmt: skip


def tensor_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: meta[k] for k in TENSOR_META if k in meta}
    if "path" in meta:
        out["filename_or_obj"] = meta["path"]  # MONAI's own name for the source
    return out
