"""One multiscale image of a store (a scene, or a label image): its parsed metadata and its
arrays' metadata. Metadata only: no chunk is read here.

An image's group is read once (the root group, already read to choose the reader, is not read
again); its arrays are then read together with its ``labels`` group, in one round trip
(:func:`tlcore_ome_zarr.nodes.read_nodes`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import zarr
from zarr.abc.store import Store

from tlcore import Source, TlcoreError
from tlcore_ome_zarr.errors import MetadataError, invalid
from tlcore_ome_zarr.metadata import Multiscale, Physical, dataset_order, physical
from tlcore_ome_zarr.nodes import GroupMeta, Kind, ZarrFormat, read_groups, read_nodes
from tlcore_ome_zarr.store import (
    Layout,
    SceneEntry,
    join,
    open_store,
    parse,
    read_root,
    stamp,
    warn,
)


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
    from zarr.storage import StorePath  # public names only (not zarr.storage._common)

    return zarr.Array(zarr.AsyncArray(metadata=metadata, store_path=StorePath(store, path)))


@dataclass(frozen=True)
class ImageMeta:
    """One multiscale image (a scene, or a label image): its metadata and its arrays' metadata,
    levels ordered largest first."""

    group: str
    multiscale: Multiscale
    arrays: tuple[ArrayMeta, ...]
    physical: Physical
    zarr_format: ZarrFormat = 3
    # The image's ``labels`` group, read with its arrays (a scene's only): its metadata, or
    # None when there is none. Not kept when reading it failed (labels_read False): the error
    # is the labels lookup's to raise, and a transient one must not stay in the cache.
    labels: GroupMeta | None = field(default=None, compare=False, hash=False)
    labels_read: bool = field(default=False, compare=False, hash=False)


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
    return _read_scene_cached(source, entry, stamp(source, entry.path))


@functools.lru_cache(maxsize=256)
def _read_scene_cached(
    source: Source, entry: SceneEntry, stamped: tuple[Any, ...] | None
) -> SceneMeta:
    store, root = open_store(source), read_root(source)
    if entry.path:
        found = read_groups(store, root.zarr_format, [entry.path])[0]
        if found is None:
            raise FileNotFoundError(f"{source.uri}: no zarr group at '{entry.path}'")
        group = found
    else:
        group = root  # read once, when the reader was chosen
    image = read_images(source, store, [group], entry.multiscale, with_labels=True)[0]
    if isinstance(image, Exception):
        raise image
    return SceneMeta(entry, image)


@dataclass(frozen=True)
class _Plan:
    group: GroupMeta
    multiscale: Multiscale
    notes: tuple[str, ...]
    paths: tuple[str, ...]  # the datasets' array paths, in the metadata's order


def _plan(source: Source, group: GroupMeta, which: int) -> _Plan:
    entries = parse(source, group.path, group.attrs)
    ms = entries[which]
    notes = list(ms.notes)
    if group.path and len(entries) > 1:
        notes.append(f"the group holds {len(entries)} multiscales entries; the first is read")
    fmt = group.zarr_format
    if (ms.version == "0.5") != (fmt == 3):
        notes.append(
            f"OME-NGFF {ms.version} metadata in a zarr v{fmt} group (the spec pairs "
            "0.5 with zarr v3 and earlier versions with zarr v2)"
        )
    paths = tuple(join(group.path, ds.path) for ds in ms.datasets)
    return _Plan(group, ms, tuple(notes), paths)


def read_images(
    source: Source,
    store: Store,
    groups: Sequence[GroupMeta],
    which: int = 0,
    with_labels: bool = False,
) -> list[ImageMeta | Exception]:
    """Parse, check and describe the multiscale image ``which`` of each group in ``groups``
    (one zarr hierarchy), reading all their arrays (and, ``with_labels``, their ``labels``
    groups) concurrently.

    Returns, per group, its image or the error that stops it: InvalidOmeZarrError naming the
    field for metadata that breaks the spec, zarr's error for unreadable array metadata. Warns
    (once) for what is read with a caveat. Other errors (the network's) are raised.
    """
    plans: list[_Plan | Exception] = []
    for group in groups:
        try:
            plans.append(_plan(source, group, which))
        except (TlcoreError, ValueError) as exc:
            plans.append(exc)
    wanted: list[tuple[str, Kind]] = []
    for plan in plans:
        if isinstance(plan, _Plan):
            wanted += [(path, "array") for path in plan.paths]
            if with_labels:
                wanted.append((join(plan.group.path, "labels"), "group"))
    fmt = groups[0].zarr_format if groups else 3
    found = iter(read_nodes(store, fmt, wanted))
    out: list[ImageMeta | Exception] = []
    for plan in plans:
        if not isinstance(plan, _Plan):
            out.append(plan)
            continue
        arrays = [next(found) for _ in plan.paths]
        labels = next(found) if with_labels else None
        for array in arrays:
            if isinstance(array, Exception) and not isinstance(array, (TlcoreError, ValueError)):
                raise array
        try:
            image = _describe(source, plan, arrays)
        except (TlcoreError, ValueError) as exc:
            out.append(exc)
            continue
        if with_labels and (labels is None or isinstance(labels, GroupMeta)):
            image = dataclasses.replace(image, labels=labels, labels_read=True)
        out.append(image)
    return out


def _describe(source: Source, plan: _Plan, found: Sequence[Any]) -> ImageMeta:
    ms, group_path, notes = plan.multiscale, plan.group.path, list(plan.notes)

    def fail(field: str, problem: str) -> Exception:
        return invalid(source.uri, group_path, ms.version, MetadataError(field, problem))

    names = [a.name for a in ms.axes]
    arrays = []
    for j, (path, arr) in enumerate(zip(plan.paths, found)):
        if isinstance(arr, Exception):
            raise arr
        if not isinstance(arr, zarr.Array):  # None: no array there (a group is not one)
            raise fail(f"{ms.field}.datasets[{j}].path", f"no zarr array at '{path}'")
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
    return ImageMeta(group_path, ms, tuple(arrays), phys, plan.group.zarr_format)
