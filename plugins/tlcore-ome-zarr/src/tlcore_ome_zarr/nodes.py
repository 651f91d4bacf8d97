"""The metadata of a store's zarr nodes (groups and arrays), read in as few requests and round
trips as the format allows: on an object store each request is a round trip of tens of
milliseconds, and a manifest names hundreds of stores.

* The zarr format is found once, at the root: ``zarr.json`` alone answers for zarr v3; only
  when it is absent are zarr v2's ``.zgroup`` and ``.zattrs`` read (together). zarr's own
  detection reads ``zarr.json``, ``.zgroup``, ``.zattrs`` and ``.zmetadata`` for every node.
* Every node below the root is read in the root's format, as zarr's own ``group[name]`` does (a
  zarr hierarchy is one format): a v3 node costs one request (its ``zarr.json``), a v2 group or
  array two sent together (``.zgroup``/``.zarray`` and ``.zattrs``).
* Consolidated metadata is not read: each array's own metadata is what describes it (a
  consolidated copy goes stale when an array is appended to).
* Nodes wanted together are read concurrently, in one round trip: the arrays of a multiscale
  image with its ``labels`` group, the wells of a plate, the listed series.

Nothing here is cached: :mod:`tlcore_ome_zarr.store` caches what it parses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import zarr
import zarr.api.asynchronous as zarr_async
import zarr.errors
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

ZarrFormat = Literal[2, 3]


class NotZarr(FileNotFoundError):
    """No zarr group (nor array) at the root of the store: neither ``zarr.json`` nor
    ``.zgroup`` (nor ``.zarray``) is there."""


@dataclass(frozen=True, eq=False)
class GroupMeta:
    """A group's path in its store, zarr format and attributes (as written)."""

    path: str
    zarr_format: ZarrFormat
    attrs: Mapping[str, Any]


def _meta(path: str, group: zarr.AsyncGroup) -> GroupMeta:
    fmt: ZarrFormat = 3 if group.metadata.zarr_format == 3 else 2
    return GroupMeta(path, fmt, dict(group.attrs))


async def _group(store: Store, path: str, fmt: ZarrFormat) -> zarr.AsyncGroup:
    return await zarr_async.open_group(
        store=store, path=path, mode="r", zarr_format=fmt, use_consolidated=False
    )


async def _root(store: Store) -> GroupMeta:
    try:
        return _meta("", await _group(store, "", 3))
    except zarr.errors.NodeNotFoundError:
        pass  # no zarr.json: a zarr v2 store, or none
    try:
        return _meta("", await _group(store, "", 2))
    except zarr.errors.NodeNotFoundError as exc:
        # Only when there is no group: a v2 array at the root is named as such.
        if await store.get(".zarray", default_buffer_prototype()) is not None:
            raise zarr.errors.ContainsArrayError(f"an array is at the root of {store}") from exc
        raise NotZarr(f"neither zarr.json nor .zgroup at the root of {store}") from exc


def read_root(store: Store) -> GroupMeta:
    """The root group of ``store``: its format found from ``zarr.json`` (v3), else ``.zgroup``
    and ``.zattrs`` (v2).

    Raises:
        NotZarr: no zarr group or array at the root.
        zarr.errors.ContainsArrayError: the root is an array.
        ValueError: unreadable metadata (zarr's and json's errors).
    """
    return sync(_root(store))


Kind = Literal["group", "array"]


async def _node(store: Store, path: str, kind: Kind, fmt: ZarrFormat) -> Any:
    try:
        if kind == "group":
            return _meta(path, await _group(store, path, fmt))
        array = await zarr_async.open_array(store=store, path=path, mode="r", zarr_format=fmt)
        return zarr.Array(array)
    except zarr.errors.NodeNotFoundError:
        return None


def read_nodes(
    store: Store, fmt: ZarrFormat, wanted: Sequence[tuple[str, Kind]]
) -> list[GroupMeta | zarr.Array[Any] | Exception | None]:
    """The nodes ``wanted`` (path, ``"group"`` or ``"array"``) in the format ``fmt``, read
    concurrently: a :class:`GroupMeta` for a group, a read-only ``zarr.Array`` for an array,
    None for one that is not there, the error for one that could not be read (the caller
    decides whether it stops everything or only what needed that node).
    """
    if not wanted:
        return []

    async def every() -> list[Any]:
        reads: list[Coroutine[Any, Any, Any]] = [_node(store, p, k, fmt) for p, k in wanted]
        return list(await asyncio.gather(*reads, return_exceptions=True))

    found = sync(every())
    for item in found:
        if isinstance(item, BaseException) and not isinstance(item, Exception):
            raise item  # cancelled, interrupted: never kept as a node's answer
    return found


def read_groups(store: Store, fmt: ZarrFormat, paths: Sequence[str]) -> list[GroupMeta | None]:
    """The groups at ``paths`` (None where there is none), read concurrently.

    Raises:
        the first error (in ``paths`` order) other than a missing group, once every read is
        done (none is left in flight).
    """
    found = read_nodes(store, fmt, [(p, "group") for p in paths])
    for item in found:
        if isinstance(item, Exception):
            raise item
    return [g if isinstance(g, GroupMeta) else None for g in found]
