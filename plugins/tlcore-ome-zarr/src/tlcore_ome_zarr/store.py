"""Reading an OME-Zarr store's root and its layout (which scenes it holds, where each lives);
one scene's metadata is read by :mod:`tlcore_ome_zarr.scene`. Metadata only: no chunk is read
here.

Three layouts become scenes:

* a plain image: one scene per ``multiscales`` entry of the root group;
* an HCS plate (``plate`` in the root, also inside a bioformats2raw store, where the spec gives
  it precedence over ``series``): one scene per field of view, id ``"<well path>/<field path>"``;
* a bioformats2raw collection: one scene per series, ids from ``OME/METADATA.ome.xml``.

Everything is opened read-only. Parsed metadata is cached per process, keyed by the metadata
files' mtime for local stores so a rewritten store is seen afresh; the root group is read once
(choosing the reader reads it) and its zarr format decides how every node below is read
(:mod:`tlcore_ome_zarr.nodes`). Warnings (what was read with a caveat) are emitted once, when
the metadata is first parsed.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zarr
import zarr.errors
import zarr.storage
from zarr.abc.store import Store

from tlcore import Source
from tlcore.io.stamps import local_stamp
from tlcore_ome_zarr.errors import MetadataError, OmeZarrWarning, invalid
from tlcore_ome_zarr.metadata import Multiscale, field_prefix, ome_attrs, parse_multiscales
from tlcore_ome_zarr.nodes import GroupMeta, NotZarr, ZarrFormat, read_groups
from tlcore_ome_zarr.nodes import read_root as read_root_node
from tlcore_ome_zarr.omexml import XmlImage, xml_images

_LAYOUT_KEYS = ("multiscales", "plate", "bioformats2raw.layout")


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


def stamp(source: Source, path: str = "") -> tuple[Any, ...] | None:
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


def read_root(source: Source) -> GroupMeta:
    """The root group's metadata (zarr format, attributes): read when the reader is chosen,
    then again only when a local store's metadata changes (a remote one: once per process).

    Raises:
        NotZarr, zarr.errors.ContainsArrayError, ValueError: as
        :func:`tlcore_ome_zarr.nodes.read_root`.
    """
    return _read_root_cached(source, stamp(source))


@functools.lru_cache(maxsize=128)
def _read_root_cached(source: Source, stamped: tuple[Any, ...] | None) -> GroupMeta:
    return read_root_node(open_store(source))


def root_kind(source: Source) -> str:
    """Which OME-NGFF key the root group holds (for ``can_open``: the root's attributes only).

    Raises NotOmeZarr when it holds none, or when there is no zarr group at the root.
    """
    return _kind(_ome_root(source).attrs)


def _ome_root(source: Source) -> GroupMeta:
    """:func:`read_root`, its refusals as :class:`NotOmeZarr`."""
    try:
        return read_root(source)
    except zarr.errors.ContainsArrayError as exc:
        raise NotOmeZarr(array_inside_store(source.uri)) from exc
    except NotZarr as exc:
        raise NotOmeZarr(
            "not a zarr store (no zarr.json or .zgroup at its root; is the path right?)"
        ) from exc


def _kind(attrs: Mapping[str, Any]) -> str:
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
    return _read_layout_cached(source, stamp(source))


@functools.lru_cache(maxsize=128)
def _read_layout_cached(source: Source, stamped: tuple[Any, ...] | None) -> Layout:
    root = _ome_root(source)  # the root read once: its kind and its attributes agree
    kind = _kind(root.attrs)
    store, fmt, attrs = open_store(source), root.zarr_format, dict(root.attrs)
    ome = ome_attrs(attrs)
    if kind == "multiscales":
        return Layout("image", _image_scenes(source, attrs))
    if kind == "plate":
        xml = _bf2raw_xml(source, store, fmt) if "bioformats2raw.layout" in ome else {}
        return Layout("plate", _plate_scenes(source, store, fmt, attrs, xml))
    return Layout("bioformats2raw", _bf2raw_scenes(source, store, fmt))


def _version_hint(attrs: Mapping[str, Any]) -> str | None:
    ome = ome_attrs(attrs)
    version = ome.get("version")
    if version is None and isinstance(ome.get("multiscales"), list) and ome["multiscales"]:
        first = ome["multiscales"][0]
        version = first.get("version") if isinstance(first, Mapping) else None
    return str(version) if version is not None else None


def parse(source: Source, group: str, attrs: Mapping[str, Any]) -> list[Multiscale]:
    try:
        return parse_multiscales(attrs)
    except MetadataError as exc:
        raise invalid(source.uri, group, _version_hint(attrs), exc) from exc


def _image_scenes(source: Source, attrs: Mapping[str, Any]) -> tuple[SceneEntry, ...]:
    entries = parse(source, "", attrs)
    names = [ms.name for ms in entries]
    if len(entries) == 1:
        return (SceneEntry(names[0] or "Image:0", names[0], ""),)
    # Several images in one group (the spec's "choose by name"): one scene each, named when the
    # names are there and unique, else by position.
    by_name = all(names) and len(set(names)) == len(names)
    return tuple(
        SceneEntry(n if by_name and n else f"Image:{i}", n, "", i) for i, n in enumerate(names)
    )


def _series_paths(source: Source, store: Store, fmt: ZarrFormat) -> list[str] | None:
    """The ``series`` list of the ``OME`` group, None when there is none."""
    group = read_groups(store, fmt, ["OME"])[0]
    if group is None:
        return None
    attrs = dict(group.attrs)
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


def _bf2raw_xml(source: Source, store: Store, fmt: ZarrFormat) -> dict[str, XmlImage]:
    """Series path -> its OME-XML image, when the series list and the XML agree in length."""
    paths = _series_paths(source, store, fmt)
    images = _ome_xml(source)
    if paths is None or len(paths) != len(images):
        return {}
    return dict(zip(paths, images))


def _bf2raw_scenes(source: Source, store: Store, fmt: ZarrFormat) -> tuple[SceneEntry, ...]:
    paths = _series_paths(source, store, fmt)
    if paths is None:  # no series list: consecutive groups 0, 1, ... (the layout's rule)
        paths = []
        while read_groups(store, fmt, [str(len(paths))])[0] is not None:
            paths.append(str(len(paths)))
        written = [True] * len(paths)
    else:  # every listed series at once
        written = [g is not None for g in read_groups(store, fmt, paths)]
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
    for i, (path, there) in enumerate(zip(paths, written)):
        if not there:
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
    source: Source,
    store: Store,
    fmt: ZarrFormat,
    attrs: Mapping[str, Any],
    xml: Mapping[str, XmlImage],
) -> tuple[SceneEntry, ...]:
    prefix = field_prefix(attrs)
    plate = ome_attrs(attrs)["plate"]
    wells = plate.get("wells") if isinstance(plate, Mapping) else None
    if not isinstance(wells, list) or not wells:
        error = MetadataError(f"{prefix}plate.wells", "expected a non-empty list of wells")
        raise invalid(source.uri, "", None, error)
    listed: dict[str, int] = {}  # well path -> its index in the list
    for k, well in enumerate(wells):
        path = well.get("path") if isinstance(well, Mapping) else None
        if not isinstance(path, str) or not path.strip("/"):
            error = MetadataError(f"{prefix}plate.wells[{k}].path", f"missing or empty: {well!r}")
            raise invalid(source.uri, "", None, error)
        path = path.strip("/")
        if path in listed:
            warn(source, "", f"{prefix}plate.wells[{k}] repeats well '{path}'; read once")
            continue
        listed[path] = k
    scenes: list[SceneEntry] = []
    for (path, k), group in zip(listed.items(), read_groups(store, fmt, list(listed))):
        if group is None:
            warn(
                source,
                "",
                f"well '{path}' ({prefix}plate.wells[{k}]) is listed but not "
                "written in the store; it is skipped",
            )
            continue
        scenes.extend(_well_fields(source, path, dict(group.attrs), xml))
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


def tczyx(values: Sequence[int], dims: str) -> tuple[int, int, int, int, int]:
    by_dim = dict(zip(dims, values))
    t, c, z, y, x = (int(by_dim.get(d, 1)) for d in "TCZYX")
    return (t, c, z, y, x)
