"""Reading an OME-Zarr store's layout: which scenes it holds and where each one lives.

Three layouts become scenes: a plain image (one scene), a bioformats2raw collection (one scene
per series) and an HCS plate (one scene per field of view, ids like ``"A/1/0"``). Everything is
opened read-only; metadata is cached per process, keyed by the root metadata file's mtime for
local stores so a rewritten store is seen afresh.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zarr
import zarr.storage
from zarr.abc.store import Store

from tlcore import Source
from tlcore_ome_zarr.metadata import Multiscale, ome_attrs, ome_xml_images, parse_multiscale

_META_FILES = ("zarr.json", ".zattrs", ".zgroup")


def open_store(source: Source) -> Store:
    """A read-only zarr store for the source (local directory or any fsspec URL)."""
    if source.is_local:
        return zarr.storage.LocalStore(source.uri, read_only=True)
    return zarr.storage.FsspecStore.from_url(
        source.uri, storage_options=dict(source.storage_options), read_only=True
    )


def group_attrs(store: Any, path: str = "") -> Mapping[str, Any]:
    return dict(zarr.open_group(store=store, path=path, mode="r").attrs)


def _stamp(source: Source, path: str = "") -> int | None:
    if not source.is_local:
        return None
    base = os.path.join(source.uri, path) if path else source.uri
    stamps = [os.stat(os.path.join(base, f)).st_mtime_ns for f in _META_FILES
              if os.path.exists(os.path.join(base, f))]  # fmt: skip
    return max(stamps) if stamps else None


def has_zarr_metadata(source: Source) -> bool:
    if source.is_local:
        return any(os.path.exists(os.path.join(source.uri, f)) for f in _META_FILES)
    fs = source.filesystem()
    return any(fs.exists(f"{source.uri}/{f}") for f in _META_FILES)


@dataclass(frozen=True)
class SceneEntry:
    id: str
    name: str | None
    path: str  # the image group's path inside the store ("" for a plain image)
    channel_names: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Layout:
    kind: str  # "image", "bioformats2raw" or "plate"
    scenes: tuple[SceneEntry, ...]


class NotOmeZarr(ValueError):
    """The store exists but is not an OME-NGFF image, collection or plate."""


def read_layout(source: Source) -> Layout:
    return _read_layout_cached(source, _stamp(source))


@functools.lru_cache(maxsize=128)
def _read_layout_cached(source: Source, stamp: int | None) -> Layout:
    store = open_store(source)
    try:
        attrs = group_attrs(store)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise NotOmeZarr(f"no zarr group at the root of {source.uri} ({exc})") from exc
    ome = ome_attrs(attrs)
    if "multiscales" in ome:
        ms = parse_multiscale(attrs)
        return Layout("image", (SceneEntry(ms.name or "Image:0", ms.name, ""),))
    if "bioformats2raw.layout" in ome:
        return Layout("bioformats2raw", tuple(_bf2raw_scenes(store, source)))
    if "plate" in ome:
        return Layout("plate", tuple(_plate_scenes(store, ome["plate"])))
    raise NotOmeZarr(
        "the root group has no OME-NGFF 'multiscales', 'bioformats2raw.layout' or 'plate' metadata"
    )


def _bf2raw_scenes(store: Any, source: Source) -> list[SceneEntry]:
    # Series paths: OME/.zattrs "series" when present, else consecutive groups 0, 1, ...
    paths: list[str] = []
    try:
        series = ome_attrs(group_attrs(store, "OME")).get("series")
        if isinstance(series, list):
            paths = [str(s) for s in series]
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        pass
    if not paths:
        i = 0
        while True:
            try:
                zarr.open_group(store=store, path=str(i), mode="r")
            except (FileNotFoundError, zarr.errors.GroupNotFoundError):
                break
            paths.append(str(i))
            i += 1
    xml_images = _ome_xml(source)
    scenes = []
    for i, path in enumerate(paths):
        if xml_images and len(xml_images) == len(paths):
            image_id, name, channels = xml_images[i]
            scenes.append(SceneEntry(image_id, name, path, tuple(channels)))
        else:
            scenes.append(SceneEntry(f"Image:{i}", None, path))
    if not scenes:
        raise NotOmeZarr("bioformats2raw layout without any series")
    return scenes


def _ome_xml(source: Source) -> list[tuple[str, str | None, list[str | None]]]:
    try:
        text = source.child("OME", "METADATA.ome.xml").read_bytes().decode("utf-8")
        return ome_xml_images(text)
    except (OSError, ValueError, SyntaxError):
        return []


def _plate_scenes(store: Any, plate: Mapping[str, Any]) -> list[SceneEntry]:
    scenes = []
    for well in plate.get("wells", []):
        well_path = str(well["path"])
        well_meta = ome_attrs(group_attrs(store, well_path)).get("well", {})
        for image in well_meta.get("images", []):
            path = f"{well_path}/{image['path']}"
            scenes.append(SceneEntry(path, None, path))
    if not scenes:
        raise NotOmeZarr("plate metadata lists no wells with images")
    return scenes


@dataclass(frozen=True)
class ArrayMeta:
    path: str  # the array's path inside the store
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]


@dataclass(frozen=True)
class SceneMeta:
    entry: SceneEntry
    multiscale: Multiscale
    arrays: tuple[ArrayMeta, ...]


def read_scene(source: Source, layout: Layout, index: int) -> SceneMeta:
    entry = layout.scenes[index]
    return _read_scene_cached(source, entry, _stamp(source, entry.path))


@functools.lru_cache(maxsize=256)
def _read_scene_cached(source: Source, entry: SceneEntry, stamp: int | None) -> SceneMeta:
    store = open_store(source)
    ms = parse_multiscale(group_attrs(store, entry.path))
    ms.dims()  # fail early on axes tlcore cannot map
    arrays = []
    for ds in ms.datasets:
        path = f"{entry.path}/{ds.path}" if entry.path else ds.path
        arr = zarr.open_array(store=store, path=path, mode="r")
        if arr.ndim != len(ms.axes):
            raise ValueError(
                f"array {path!r} has {arr.ndim} dimensions but the multiscales metadata "
                f"declares {len(ms.axes)} axes"
            )
        arrays.append(ArrayMeta(path, tuple(arr.shape), str(arr.dtype), tuple(arr.chunks)))
    return SceneMeta(entry, ms, tuple(arrays))
