"""Rows with several images (pairs): an input and its target, a segmentation, a deconvolved
copy, each in its own manifest column, read at the same timepoints with the same crop box.

The first key of ``image_columns`` is the row's main image (:attr:`ManifestRow.path`...); every
other key is an :class:`ImageRef` in :attr:`ManifestRow.images`. Scene, resolution and options
apply to every image of a row unless a per-key column is given; a key without a channel column
takes every channel. One time range (the row's) applies to every image: the timepoints are
drawn once and read in each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tlcore import vocabulary

if TYPE_CHECKING:
    from tlcore.sampling.manifest import ManifestRow


class CellError(ValueError):
    """A bad cell of a per-key column (``column`` names it)."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class ImageRef:
    """One more image of a manifest row.

    Attributes:
        path: the image path or URL (resolved like the main one).
        scene, resolution, channels, options: as for the row's main image.
        columns: the manifest column each field came from (``{"path": "target_path",
            "channel": "target_channel", ...}``), for error messages.
    """

    path: str
    scene: int | str = 0
    resolution: int = 0
    channels: tuple[int | str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)


def parse_images(
    spec: Mapping[str, Mapping[str, str]],
    cell: Callable[[str], Any],
    defaults: Mapping[str, Any],
    resolve: Callable[[str], str],
    parsers: Mapping[str, Callable[[Any], Any]],
) -> dict[str, ImageRef]:
    """The row's other images. ``spec`` maps each key to its columns (``path`` and any of
    ``channel``, ``scene``, ``resolution``, ``options``); a field without a column takes
    ``defaults`` (the main image's), the channel none (every channel). Raises
    :class:`CellError` naming the bad column."""
    out = {}
    for key, columns in spec.items():
        values: dict[str, Any] = {}
        for name in ("path", "channel", "scene", "resolution", "options"):
            column = columns.get(name)
            if column is None:
                values[name] = None if name == "channel" else defaults.get(name)
                continue
            raw = cell(column)
            try:
                values[name] = parsers[name](raw)
            except ValueError as exc:
                raise CellError(column, str(exc)) from None
        if not values["path"]:
            raise CellError(columns["path"], f"the {key!r} image path is empty")
        out[key] = ImageRef(
            path=resolve(str(values["path"]).strip()),
            scene=values["scene"],
            resolution=values["resolution"],
            channels=values["channel"],
            options=values["options"],
            columns=dict(columns),
        )
    return out


def image_sample_fields(row: ManifestRow) -> dict[str, Any]:
    """Each image's own sample fields (``<key>_path``...) of a row with several images."""
    out: dict[str, Any] = {}
    refs = [(row.key, row.path, row.scene, row.resolution, row.channels, row.options)]
    for k, image in row.images.items():
        refs.append((k, image.path, image.scene, image.resolution, image.channels, image.options))
    for key, path, scene, level, channels, options in refs:
        fields = vocabulary.image_fields(key)
        out[fields["path_key"]] = path
        out[fields["scene_key"]] = scene
        out[fields["level_key"]] = level
        out[fields["channel_key"]] = "" if channels is None else ",".join(map(str, channels))
        out[fields["options_key"]] = dict(options)
    return out
