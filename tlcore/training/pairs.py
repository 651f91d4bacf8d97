"""Whole-image statistics prepared before training: every ``NormalizeByImaged`` of a pipeline
gets the statistics of each image its keys read, once per file, in the parent process (they
travel to the DataLoader workers inside the dataset's pickle)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tlcore.io.source import is_reader_option
from tlcore.sampling.manifest import ManifestRow

__all__ = ["normalizers", "prepare_statistics"]


def normalizers(transforms: Any) -> list[Any]:
    """The ``NormalizeByImaged`` steps of a pipeline (nested ``Compose``\\ s included)."""
    from tlcore.transforms.normalize import NormalizeByImaged

    found: list[Any] = []
    for step in getattr(transforms, "transforms", [transforms]):
        if isinstance(step, NormalizeByImaged):
            found.append(step)
        elif hasattr(step, "transforms") and step is not transforms:
            found.extend(normalizers(step))
    return found


def prepare_statistics(
    transforms: Any, rows: Sequence[ManifestRow], storage_options: Mapping[str, Any]
) -> int:
    """Estimate, for each ``NormalizeByImaged`` of ``transforms``, the statistics of every
    image of ``rows`` under its keys (the main image for the row's key, the others by theirs).
    Returns how many estimates were new to the transforms' tables."""
    new = 0
    for step in normalizers(transforms):
        if not step.storage_options and storage_options:
            step.storage_options = dict(storage_options)
        images = {}
        for row in rows:
            for key in step.keys:
                if key == row.key:
                    path, scene, options = row.path, row.scene, row.options
                elif key in row.images:
                    ref = row.images[key]
                    path, scene, options = ref.path, ref.scene, ref.options
                else:
                    continue
                # The sample's metadata keeps reader options only (never credentials).
                merged = {**storage_options, **options}
                reader = {k: v for k, v in merged.items() if is_reader_option(k)}
                images[(path, str(scene), repr(sorted(reader.items())))] = (path, scene, reader)
        new += step.prepare(images.values())
    return new
