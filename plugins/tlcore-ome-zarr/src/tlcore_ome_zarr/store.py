"""Reading an OME-Zarr store's layout (which scenes it holds, where each lives) and the array
metadata of one scene. Metadata only: no chunk is read here.

Three layouts become scenes:

* a plain image: one scene per ``multiscales`` entry of the root group;
* an HCS plate (``plate`` in the root, also inside a bioformats2raw store, where the spec gives
  it precedence over ``series``): one scene per field of view, id ``"<well path>/<field path>"``;
* a bioformats2raw collection: one scene per series, ids from ``OME/METADATA.ome.xml``.

Everything is opened read-only. Parsed metadata is cached per process, keyed by the metadata
files' mtime for local stores so a rewritten store is seen afresh. Warnings (what was read with
a caveat) are emitted once, when the metadata is first parsed.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import zarr
import zarr.errors
import zarr.storage
from zarr.abc.store import Store

from tlcore import Source
from tlcore.io.stamps import local_stamp
from tlcore_ome_zarr.errors import MetadataError, OmeZarrWarning, invalid
from tlcore_ome_zarr.metadata import (
    Multiscale,
    Physical,
    dataset_order,
    field_prefix,
    ome_attrs,
    parse_multiscales,
    physical,
)
from tlcore_ome_zarr.omexml import XmlImage, xml_images

_META_FILES = ("zarr.json", ".zattrs", ".zgroup")
_LAYOUT_KEYS = ("multiscales", "plate", "bioformats2raw.layout")
_MISSING = (FileNotFoundError, zarr.errors.NodeNotFoundError)


class NotOmeZarr(ValueError):
    """The store exists but is not an OME-NGFF image, collection or plate."""


def open_store(source: Source) -> Store:
    """A read-only zarr store for the source (local directory or any fsspec URL).

    A remote store reads through :class:`RemoteStore`: one GET per chunk (no HEAD), each read
    retried on its own (:func:`tlcore.io.remote.retry_async`).
    """
    if source.is_local:
        return zarr.storage.LocalStore(source.uri, read_only=True)
    from tlcore_ome_zarr.remote import RemoteStore, read_options

    inner = zarr.storage.FsspecStore.from_url(
        source.uri, storage_options=read_options(source), read_only=True
    )
    return RemoteStore(inner, source.uri, source.storage_options)


def open_group(store: Store, path: str = "") -> zarr.Group:
    return zarr.open_group(store=store, path=path, mode="r")


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


#: Warnings already shown (Python's registry for :func:`warnings.warn_explicit`): each note
#: once per store under the default filters.
_SHOWN: dict[str | tuple[str, type[Warning], int], int] = {}


def warn(source: Source, group: str, note: str) -> None:
    """A note about the store's metadata, once per store and note. Issued as if from the store
    itself (no plugin source line under it: the store is what the user can act on)."""
    where = f"group '{group}'" if group else "root group"
    warnings.warn_explicit(
        f"{source.uri} ({where}): {note}", OmeZarrWarning, filename="tlcore-ome-zarr", lineno=0,
        module="tlcore_ome_zarr", registry=_SHOWN,
    )  # fmt: skip


def _stamp(source: Source, path: str = "") -> tuple[Any, ...] | None:
    """What the metadata parsed for the group at ``path`` depends on, as it is on disk: the
    group's folder, its metadata and that of its arrays and child groups (appending timepoints
    rewrites only ``0/zarr.json``); None for a remote store (read once per process)."""
    return local_stamp(os.path.join(source.uri, path) if path else source.uri)


def array_inside_store(uri: str) -> str:
    """What to say when ``uri`` is one array of a store (``x.ome.zarr/0``), not the store."""
    parts = uri.rstrip("/").split("/")
    store = next(
        ("/".join(parts[: i + 1]) for i in range(len(parts) - 2, -1, -1)
         if parts[i].endswith(".zarr")),
        "/".join(parts[:-1]),
    )  # fmt: skip
    return (
        f"{uri} is one zarr array inside a store, not an OME-Zarr image: open the store folder "
        f"{store} instead (choose the scene and level with the manifest's scene and resolution "
        "columns, or scene=/level=)"
    )


def has_zarr_metadata(source: Source) -> bool:
    if source.is_local:
        return any(os.path.exists(os.path.join(source.uri, f)) for f in _META_FILES)
    fs = source.filesystem()
    return any(fs.exists(f"{source.uri}/{f}") for f in _META_FILES)


def root_kind(source: Source) -> str:
    """Which OME-NGFF key the root group holds (for ``can_open``: the root's attributes only).

    Raises NotOmeZarr when it holds none.
    """
    try:
        attrs = open_group(open_store(source)).attrs
    except zarr.errors.ContainsArrayError as exc:
        raise NotOmeZarr(array_inside_store(source.uri)) from exc
    except _MISSING as exc:
        raise NotOmeZarr(f"no zarr group at the root of {source.uri} ({exc})") from exc
    ome = ome_attrs(attrs)
    for key in _LAYOUT_KEYS:
        if key in ome:
            return key
    raise NotOmeZarr(
        "the root group has no OME-NGFF 'multiscales', 'bioformats2raw.layout' or 'plate' metadata"
    )


# -- layout -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneEntry:
    id: str
    name: str | None
    path: str  # the image group's path inside the store ("" for the root)
    multiscale: int = 0  # which entry of the group's multiscales list
    channel_names: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Layout:
    kind: str  # "image", "bioformats2raw" or "plate"
    scenes: tuple[SceneEntry, ...]


def read_layout(source: Source) -> Layout:
    return _read_layout_cached(source, _stamp(source))


@functools.lru_cache(maxsize=128)
def _read_layout_cached(source: Source, stamp: tuple[Any, ...] | None) -> Layout:
    store = open_store(source)
    kind = root_kind(source)
    attrs = dict(open_group(store).attrs)
    ome = ome_attrs(attrs)
    if kind == "multiscales":
        return Layout("image", _image_scenes(source, attrs))
    if kind == "plate":
        xml = _bf2raw_xml(source, store) if "bioformats2raw.layout" in ome else {}
        return Layout("plate", _plate_scenes(source, store, attrs, xml))
    return Layout("bioformats2raw", _bf2raw_scenes(source, store))


def _version_hint(attrs: Mapping[str, Any]) -> str | None:
    ome = ome_attrs(attrs)
    version = ome.get("version")
    if version is None and isinstance(ome.get("multiscales"), list) and ome["multiscales"]:
        first = ome["multiscales"][0]
        version = first.get("version") if isinstance(first, Mapping) else None
    return str(version) if version is not None else None


def _parse(source: Source, group: str, attrs: Mapping[str, Any]) -> list[Multiscale]:
    try:
        return parse_multiscales(attrs)
    except MetadataError as exc:
        raise invalid(source.uri, group, _version_hint(attrs), exc) from exc


def _image_scenes(source: Source, attrs: Mapping[str, Any]) -> tuple[SceneEntry, ...]:
    entries = _parse(source, "", attrs)
    names = [ms.name for ms in entries]
    if len(entries) == 1:
        return (SceneEntry(names[0] or "Image:0", names[0], ""),)
    # Several images in one group (the spec's "choose by name"): one scene each, named when the
    # names are there and unique, else by position.
    by_name = all(names) and len(set(names)) == len(names)
    return tuple(
        SceneEntry(n if by_name and n else f"Image:{i}", n, "", i) for i, n in enumerate(names)
    )


def _series_paths(source: Source, store: Store) -> list[str] | None:
    """The ``series`` list of the ``OME`` group, None when there is none."""
    try:
        attrs = dict(open_group(store, "OME").attrs)
    except _MISSING:
        return None
    series = ome_attrs(attrs).get("series")
    if series is None:
        return None
    if not isinstance(series, list) or not all(isinstance(s, str) and s for s in series):
        error = MetadataError(f"{field_prefix(attrs)}series", "expected a list of group paths")
        raise invalid(source.uri, "OME", None, error)
    return [s.strip("/") for s in series]


def _ome_xml(source: Source) -> list[XmlImage]:
    try:
        text = source.child("OME", "METADATA.ome.xml").read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    try:
        return xml_images(text)
    except Exception as exc:  # ome-types raises parser- and model-specific errors
        warn(
            source,
            "OME",
            f"METADATA.ome.xml could not be read ({type(exc).__name__}: {exc}); "
            "scene ids fall back to Image:<index>",
        )
        return []


def _bf2raw_xml(source: Source, store: Store) -> dict[str, XmlImage]:
    """Series path -> its OME-XML image, when the series list and the XML agree in length."""
    paths = _series_paths(source, store)
    images = _ome_xml(source)
    if paths is None or len(paths) != len(images):
        return {}
    return dict(zip(paths, images))


def _bf2raw_scenes(source: Source, store: Store) -> tuple[SceneEntry, ...]:
    paths = _series_paths(source, store)
    if paths is None:  # no series list: consecutive groups 0, 1, ... (the layout's rule)
        paths = []
        while True:
            try:
                open_group(store, str(len(paths)))
            except _MISSING:
                break
            paths.append(str(len(paths)))
    images = _ome_xml(source)
    if images and len(images) != len(paths):
        warn(
            source,
            "OME",
            f"METADATA.ome.xml describes {len(images)} images for "
            f"{len(paths)} series; scene ids fall back to Image:<index>",
        )
        images = []
    scenes = []
    for i, path in enumerate(paths):
        try:
            open_group(store, path)
        except _MISSING:
            warn(source, "", f"series {i} ('{path}') is listed but not written; it is skipped")
            continue
        if images:
            image = images[i]
            scenes.append(SceneEntry(image.id, image.name, path, 0, image.channel_names))
        else:
            scenes.append(SceneEntry(f"Image:{i}", None, path))
    if not scenes:
        raise NotOmeZarr("bioformats2raw layout without any series")
    return tuple(scenes)


def _plate_scenes(
    source: Source, store: Store, attrs: Mapping[str, Any], xml: Mapping[str, XmlImage]
) -> tuple[SceneEntry, ...]:
    prefix = field_prefix(attrs)
    plate = ome_attrs(attrs)["plate"]
    wells = plate.get("wells") if isinstance(plate, Mapping) else None
    if not isinstance(wells, list) or not wells:
        error = MetadataError(f"{prefix}plate.wells", "expected a non-empty list of wells")
        raise invalid(source.uri, "", None, error)
    seen: set[str] = set()
    scenes: list[SceneEntry] = []
    for k, well in enumerate(wells):
        path = well.get("path") if isinstance(well, Mapping) else None
        if not isinstance(path, str) or not path.strip("/"):
            error = MetadataError(f"{prefix}plate.wells[{k}].path", f"missing or empty: {well!r}")
            raise invalid(source.uri, "", None, error)
        path = path.strip("/")
        if path in seen:
            warn(source, "", f"{prefix}plate.wells[{k}] repeats well '{path}'; read once")
            continue
        seen.add(path)
        try:
            well_attrs = dict(open_group(store, path).attrs)
        except _MISSING:
            warn(
                source,
                "",
                f"well '{path}' ({prefix}plate.wells[{k}]) is listed but not "
                "written in the store; it is skipped",
            )
            continue
        scenes.extend(_well_fields(source, path, well_attrs, xml))
    if not scenes:
        error = MetadataError(f"{prefix}plate.wells", "no listed well holds a field of view")
        raise invalid(source.uri, "", None, error)
    return tuple(scenes)


def _well_fields(
    source: Source, path: str, attrs: Mapping[str, Any], xml: Mapping[str, XmlImage]
) -> list[SceneEntry]:
    prefix = field_prefix(attrs)
    well = ome_attrs(attrs).get("well")
    images = well.get("images") if isinstance(well, Mapping) else None
    if not isinstance(images, list):
        error = MetadataError(f"{prefix}well.images", "expected the list of the well's fields")
        raise invalid(source.uri, path, None, error)
    out = []
    for j, image in enumerate(images):
        field = image.get("path") if isinstance(image, Mapping) else None
        if not isinstance(field, str) or not field.strip("/"):
            error = MetadataError(f"{prefix}well.images[{j}].path", f"missing or empty: {image!r}")
            raise invalid(source.uri, path, None, error)
        full = join(path, field)
        found = xml.get(full)
        if found is not None:
            out.append(SceneEntry(full, found.name, full, 0, found.channel_names))
        else:
            out.append(SceneEntry(full, None, full))
    return out


# -- one image ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayMeta:
    path: str  # the array's path inside the store
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    # zarr's parsed metadata of the array, handed to readers (and with them to DataLoader
    # workers, pickled or forked) so that opening the array again costs no request.
    metadata: Any = field(default=None, compare=False, hash=False, repr=False)


def open_array(source: Source, path: str, metadata: Any = None) -> zarr.Array[Any]:
    """The zarr array at ``path``, read-only; from ``metadata`` (zarr's parsed array metadata)
    without reading the store when given, else opened the usual way."""
    store = open_store(source)
    if metadata is None:
        return zarr.open_array(store=store, path=path, mode="r")
    from zarr.core.array import AsyncArray
    from zarr.storage._common import StorePath

    return zarr.Array(AsyncArray(metadata=metadata, store_path=StorePath(store, path)))


@dataclass(frozen=True)
class ImageMeta:
    """One multiscale image (a scene, or a label image): its metadata and its arrays' metadata,
    levels ordered largest first."""

    group: str
    multiscale: Multiscale
    arrays: tuple[ArrayMeta, ...]
    physical: Physical


@dataclass(frozen=True)
class SceneMeta:
    entry: SceneEntry
    image: ImageMeta

    @property
    def multiscale(self) -> Multiscale:
        return self.image.multiscale

    @property
    def arrays(self) -> tuple[ArrayMeta, ...]:
        return self.image.arrays


def read_scene(source: Source, layout: Layout, index: int) -> SceneMeta:
    entry = layout.scenes[index]
    return _read_scene_cached(source, entry, _stamp(source, entry.path))


@functools.lru_cache(maxsize=256)
def _read_scene_cached(
    source: Source, entry: SceneEntry, stamp: tuple[Any, ...] | None
) -> SceneMeta:
    image = read_image(source, open_store(source), entry.path, entry.multiscale)
    return SceneMeta(entry, image)


def read_image(source: Source, store: Store, group_path: str, which: int = 0) -> ImageMeta:
    """Parse, check and describe the multiscale image ``which`` of the group ``group_path``.

    Raises InvalidOmeZarrError naming the field for metadata that breaks the spec; warns (once)
    for what is read with a caveat.
    """
    group = open_group(store, group_path)
    attrs = dict(group.attrs)
    entries = _parse(source, group_path, attrs)
    ms = entries[which]
    notes = list(ms.notes)
    if group_path and len(entries) > 1:
        notes.append(f"the group holds {len(entries)} multiscales entries; the first is read")
    fmt = group.metadata.zarr_format
    if (ms.version == "0.5") != (fmt == 3):
        notes.append(
            f"OME-NGFF {ms.version} metadata in a zarr v{fmt} group (the spec pairs "
            "0.5 with zarr v3 and earlier versions with zarr v2)"
        )

    def fail(field: str, problem: str) -> Exception:
        return invalid(source.uri, group_path, ms.version, MetadataError(field, problem))

    names = [a.name for a in ms.axes]
    arrays = []
    for j, ds in enumerate(ms.datasets):
        path = join(group_path, ds.path)
        try:
            arr = zarr.open_array(store=store, path=path, mode="r")
        except _MISSING as exc:
            raise fail(f"{ms.field}.datasets[{j}].path", f"no zarr array at '{path}'") from exc
        if arr.ndim != len(ms.axes):
            raise fail(
                f"{ms.field}.axes",
                f"{len(ms.axes)} axes {names} declared, but the array '{path}' has "
                f"{arr.ndim} dimensions",
            )
        dim_names = getattr(arr.metadata, "dimension_names", None)
        if dim_names is not None and list(dim_names) != names:
            raise fail(
                f"{ms.field}.axes",
                f"axis names {names} disagree with the dimension_names {list(dim_names)} of "
                f"the array '{path}'",
            )
        if dim_names is None and ms.version == "0.5":
            notes.append(
                f"array '{path}' has no dimension_names (OME-NGFF 0.5 requires them "
                "to match the axes); read with the axes' names"
            )
        shape, dtype, chunks = tuple(arr.shape), str(arr.dtype), tuple(arr.chunks)
        arrays.append(ArrayMeta(path, shape, dtype, chunks, arr.metadata))
    try:
        order = dataset_order([a.shape for a in arrays])
    except ValueError as exc:
        raise fail(f"{ms.field}.datasets", str(exc)) from exc
    if order != sorted(order):
        listed = [ds.path for ds in ms.datasets]
        ms = ms.reordered(
            order,
            f"{ms.field}.datasets {listed} are not listed from the highest "
            "resolution to the lowest as the spec requires; read as levels "
            f"{[listed[i] for i in order]}",
        )
        notes.append(ms.notes[-1])
        arrays = [arrays[i] for i in order]
    phys = physical(ms)
    for note in (*notes, *phys.notes):
        warn(source, group_path, note)
    return ImageMeta(group_path, ms, tuple(arrays), phys)


def group_attrs_or_none(store: Store, path: str) -> dict[str, Any] | None:
    try:
        return dict(open_group(store, path).attrs)
    except _MISSING:
        return None


def tczyx(values: Sequence[int], dims: str) -> tuple[int, int, int, int, int]:
    by_dim = dict(zip(dims, values))
    t, c, z, y, x = (int(by_dim.get(d, 1)) for d in "TCZYX")
    return (t, c, z, y, x)
