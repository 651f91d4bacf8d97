"""``tlcore preview``: a montage of the crops training would draw, to look at before spending
GPU time. Samples come from the datamodule's own dataset (same seed, epoch and positions as
training), each shown as a maximum projection over Z, labelled with file, scene and timepoint;
a row with several images (a pair's input and target) shows them side by side in one cell.
Imports torch, the datamodule and Pillow when called."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcore import vocabulary

__all__ = ["preview", "render_montage", "sample_picture"]

TILE = 192  # pixels per tile side in the montage
LABEL = 30  # pixels of text under each tile
GAP = 4  # pixels between the images of one sample


def _project(image: np.ndarray, n_timepoints: int | None) -> np.ndarray:
    """C, (Z,) Y, X (time folded into C) -> an 8-bit Y, X, 3 picture of the first timepoint:
    max over Z; channels 1-3 as grey, green-magenta or RGB; each channel stretched between its
    1st and 99.8th percentiles."""
    array = np.asarray(image, dtype=np.float32)
    if n_timepoints:
        array = array[: array.shape[0] // n_timepoints]
    if array.ndim == 4:
        array = array.max(axis=1)
    channels = []
    for plane in array[:3]:
        lo, hi = np.percentile(plane, [1.0, 99.8])
        channels.append(np.clip((plane - lo) / (hi - lo if hi > lo else 1.0), 0, 1))
    if len(channels) == 1:
        rgb = np.stack([channels[0]] * 3, axis=-1)
    elif len(channels) == 2:
        rgb = np.stack([channels[1], channels[0], channels[1]], axis=-1)
    else:
        rgb = np.stack(channels, axis=-1)
    return (rgb * 255).astype(np.uint8)


def sample_picture(sample: Mapping[str, Any], keys: Sequence[str]) -> np.ndarray:
    """The picture of one sample: each of ``keys`` projected (:func:`_project`, its own
    channels and contrast), left to right with a grey gap of ``GAP`` pixels, bottom-padded to
    one height. Y, X, 3 uint8."""
    pictures = []
    for key in keys:
        meta: Mapping[str, Any] = sample.get(vocabulary.meta_key(key)) or {}
        pictures.append(_project(np.asarray(sample[key]), meta.get("n_timepoints")))
    height = max(p.shape[0] for p in pictures)
    parts: list[np.ndarray] = []
    for picture in pictures:
        if parts:
            parts.append(np.full((height, GAP, 3), 96, dtype=np.uint8))
        parts.append(np.pad(picture, ((0, height - picture.shape[0]), (0, 0), (0, 0))))
    return np.concatenate(parts, axis=1)


def render_montage(
    tiles: Sequence[np.ndarray],
    labels: Sequence[str],
    out: str | os.PathLike[str],
    width: int = 1,
) -> Path:
    """Lay out ``tiles`` (Y, X, 3 uint8) in a grid with a label under each; write a PNG. Each
    cell is ``width`` tiles wide (``TILE * width`` pixels: a sample's images side by side)."""
    from PIL import Image, ImageDraw

    n = len(tiles)
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    cell = TILE * width
    sheet = Image.new("RGB", (cols * cell, rows * (TILE + LABEL)), "black")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, label) in enumerate(zip(tiles, labels)):
        y, x = divmod(i, cols)
        picture = Image.fromarray(tile)
        picture.thumbnail((cell, TILE), Image.Resampling.NEAREST)
        if picture.width < cell // 2 and picture.height < TILE // 2:
            # Tiny crops: enlarge so the pixels can be seen, within the cell.
            scale = min((cell // 2) // max(picture.width, 1), (TILE // 2) // picture.height)
            picture = picture.resize((picture.width * scale, picture.height * scale))
        left, top = x * cell + (cell - picture.width) // 2, y * (TILE + LABEL)
        sheet.paste(picture, (left, top + (TILE - picture.height) // 2))
        for line, text in enumerate(label.split("\n")[:2]):
            draw.text((x * cell + 4, top + TILE + 2 + 13 * line), text[: 34 * width], fill="white")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def preview(
    manifest: Any,
    out: str | os.PathLike[str] = "preview.png",
    n: int = 16,
    split: str = "train",
    epoch: int = 0,
    key: str = "raw",
    datamodule: Any = None,
    keys: Sequence[str] | None = None,
    **datamodule_kwargs: Any,
) -> Path:
    """Draw the first ``n`` samples of ``epoch`` of ``split`` exactly as the datamodule would
    (same seed, sampling, transforms) and write them as a labelled montage to ``out``.

    ``keys``: the images shown side by side in each cell; default: the datamodule's
    ``image_columns`` keys (a pair's input and target), else ``[key]``.

    ``datamodule_kwargs`` are :class:`tlcore.RandomTimelapseDatamodule`'s (``patch_shape``,
    ``num_timepoints``, ``seed``, ``transforms``...); or pass a built ``datamodule`` (from a
    config), whose manifest is then used.
    """
    from tlcore.training.datamodule import RandomTimelapseDatamodule

    if datamodule is None:
        # An epoch's first positions draw the same samples whatever its length (the row order
        # extends permutation by permutation), so a longer epoch shows n tiles, same draws.
        datamodule_kwargs.setdefault("samples_per_epoch", {split: n})
        datamodule_kwargs.setdefault("validate", False)  # preview shows; `validate` checks
        datamodule = RandomTimelapseDatamodule(manifest, **datamodule_kwargs)
    columns = getattr(datamodule, "columns", None)
    if keys is None and columns is not None and columns.images:  # a pair: every image
        keys = [columns.image_key, *columns.images]
    keys = list(keys or [key])
    dataset = datamodule.dataset(split)
    tiles, labels = [], []
    for position in range(min(n, len(dataset))):
        sample = dataset[(epoch, position)]
        tiles.append(sample_picture(sample, keys))
        meta: Mapping[str, Any] = sample.get(vocabulary.meta_key(keys[0])) or {}
        name = Path(str(sample[vocabulary.PATH]).rstrip("/")).name
        shown = f"  ({' | '.join(keys)})" if len(keys) > 1 else ""
        labels.append(f"{name}{shown}\nscene {meta.get('scene', sample['scene'])}  T {sample['T']}")
    return render_montage(tiles, labels, out, width=len(keys))
