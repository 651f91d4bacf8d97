"""The one vocabulary from manifest to batch: the manifest's default column names and the keys
a sample carries from the dataset through the transforms into the batch.

A manifest row ``path, channel, split, scene, resolution, start, stop, options`` becomes a
sample ``{"original_path", "scene", "resolution", "C", "T"}`` (plus the row's extra columns);
the loader opens ``original_path`` at that scene and resolution level and puts the image under
the image key (``"raw"``) with its metadata under ``"raw_meta"``. Every name is configurable
where it is used; these are the defaults every part of tlcore shares.
"""

from __future__ import annotations

from collections.abc import Hashable

# -- manifest columns (RandomTimelapseDatamodule's *_column arguments) ------------------------
PATH_COLUMN = "path"
CHANNEL_COLUMN = "channel"
SPLIT_COLUMN = "split"
SCENE_COLUMN = "scene"
RESOLUTION_COLUMN = "resolution"
TIME_START_COLUMN = "start"
TIME_STOP_COLUMN = "stop"
OPTIONS_COLUMN = "options"

# -- sample keys (what the dataset hands the transforms) ----------------------------------------
#: The image path or URL (the cyto_dl guides' name).
PATH = "original_path"
#: The scene: an index or an id.
SCENE = "scene"
#: The resolution level (0 = full resolution).
RESOLUTION = "resolution"
#: The channels to load: None (all), indices or names.
CHANNELS = "C"
#: The timepoint, or a list of timepoints.
TIMEPOINTS = "T"
#: The timepoints' acquisition times in seconds (NaN where the file records none).
TIME_SECONDS = "T_seconds"
#: The row's reader options (the manifest's options column).
OPTIONS = "reader_options"
#: The row's 0-based position in its table, and its split.
ROW = "row"
SPLIT = "split"
#: The keys a loader reads from a sample, in the guides' order.
SAMPLE_KEYS = (PATH, SCENE, RESOLUTION, CHANNELS, TIMEPOINTS)

#: The key the default pipeline loads the image into.
IMAGE = "raw"


def meta_key(key: Hashable) -> str:
    """Where the transforms keep a key's metadata: ``"raw"`` -> ``"raw_meta"``."""
    return f"{key}_meta"


# -- rows with several images (pairs) -----------------------------------------------------------
#: LoadLazyd's argument -> the suffix of each image's own sample field, for rows with several
#: images: the image under key ``"target"`` is named by ``target_path``, ``target_scene``,
#: ``target_resolution``, ``target_C`` and ``target_reader_options`` (the main image has both
#: these and the plain names above). Timepoints (``T``) are shared.
IMAGE_FIELDS = {
    "path_key": "path",
    "scene_key": SCENE,
    "level_key": RESOLUTION,
    "channel_key": CHANNELS,
    "options_key": OPTIONS,
}


def image_fields(key: str) -> dict[str, str]:
    """LoadLazyd's key arguments for the image under ``key`` of a row with several images:
    ``LoadLazyd(keys="target", **image_fields("target"))``."""
    return {arg: f"{key}_{suffix}" for arg, suffix in IMAGE_FIELDS.items()}
