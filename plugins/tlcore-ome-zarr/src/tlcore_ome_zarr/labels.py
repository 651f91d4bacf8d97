"""Label images (``<image>/labels/<name>``, NGFF image-label) matched to an image level.

A label is exposed at an image level only when one of its own levels lies on that level's pixel
grid: same T, Z, Y, X sizes, same scale and same origin on the axes both have. Labels are never
resampled: a label with no such level is left out of ``LazyImage.labels`` at that level, with a
warning and the reason in ``metadata["labels_skipped"]`` (resampling a segmentation would invent
label values at boundaries).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from tlcore import Source
from tlcore_ome_zarr.errors import MetadataError
from tlcore_ome_zarr.metadata import labels_list
from tlcore_ome_zarr.nodes import GroupMeta, read_groups
from tlcore_ome_zarr.scene import ImageMeta, SceneMeta, read_images
from tlcore_ome_zarr.store import join, open_store, tczyx, warn


@dataclass(frozen=True)
class LabelChoice:
    """For one image level: label name -> (its image, the matching label level), and the
    labels left out with the reason."""

    matched: tuple[tuple[str, ImageMeta, int], ...]
    skipped: tuple[tuple[str, str], ...]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return True  # an axis only one side has (or an 0.1-0.3 store without scales)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def match_level(label: ImageMeta, image: ImageMeta, level: int) -> int | str:
    """The index of ``label``'s level on the grid of ``image`` level ``level``, or the reason
    why there is none."""
    ims, lms = image.multiscale, label.multiscale
    want = tczyx(image.arrays[level].shape, ims.dims())
    for k, arr in enumerate(label.arrays):
        got = tczyx(arr.shape, lms.dims())
        if got[:1] + got[2:] != want[:1] + want[2:]:
            continue
        if all(_close(ims.scale(level, d), lms.scale(k, d)) for d in "TZYX") and all(
            _close(ims.translation(level, d) or 0.0, lms.translation(k, d) or 0.0)
            for d in "TZYX"
            if ims.axis(d) and lms.axis(d)
        ):
            return k
    shapes = [tczyx(a.shape, lms.dims()) for a in label.arrays]
    return (
        f"none of its levels (TCZYX shapes {shapes}) has the T, Z, Y, X size, scale and origin "
        f"of image level {level} (shape {want}); labels are not resampled"
    )


def choose(source: Source, scene: SceneMeta, level: int) -> LabelChoice:
    return _choose_cached(source, scene, level)


@functools.lru_cache(maxsize=256)
def _choose_cached(source: Source, scene: SceneMeta, level: int) -> LabelChoice:
    images, skipped = _read_labels(source, scene.image)
    matched = []
    for name, label in images:
        found = match_level(label, scene.image, level)
        if isinstance(found, int):
            matched.append((name, label, found))
        else:
            skipped.append((name, found))
    for name, reason in skipped:
        warn(source, scene.image.group, f"label {name!r} is left out at level {level}: {reason}")
    return LabelChoice(tuple(matched), tuple(skipped))


def _read_labels(
    source: Source, image: ImageMeta
) -> tuple[list[tuple[str, ImageMeta]], list[tuple[str, str]]]:
    """The label images listed in ``image``'s ``labels`` group (read with the image's arrays
    when the scene was read), and those skipped with the reason. Their groups are read
    together, then all their arrays together: two round trips whatever their number."""
    store = open_store(source)
    group = join(image.group, "labels")
    found = image.labels
    if not image.labels_read:  # not read with the image, or that read failed: read it now
        found = read_groups(store, image.zarr_format, [group])[0]
    if found is None:
        return [], []
    try:
        names = labels_list(found.attrs)
    except MetadataError as exc:
        # Invalid label metadata must not stop the image from loading; it is reported instead.
        return [], [("*", f"{group}: {exc}")]
    paths = [join(group, name) for name in names]
    groups = read_groups(store, image.zarr_format, paths)
    skipped: list[tuple[str, str]] = []
    present: list[tuple[str, GroupMeta]] = []
    for name, path, label in zip(names, paths, groups):
        if label is None:
            skipped.append((name, f"it is listed in '{group}' but '{path}' is not written"))
        else:
            present.append((name, label))
    images: list[tuple[str, ImageMeta]] = []
    read = read_images(source, store, [label for _, label in present])
    for (name, _), result in zip(present, read):
        if isinstance(result, Exception):
            skipped.append((name, str(result)))
        else:
            images.append((name, result))
    return images, skipped
