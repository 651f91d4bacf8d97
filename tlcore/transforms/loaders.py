"""Loaders with the signatures of the guides and of MONAI: ``BioIOImageLoaderd`` (the cyto_dl
guide's loader), ``LoadImaged`` with a :class:`TlcoreReader` (``OmeZarrReader``), all on
:class:`~tlcore.transforms.load.LoadLazyd`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from tlcore import vocabulary
from tlcore.errors import TlcoreError
from tlcore.transforms.arrays import (
    numpy_dtype,
    read_whole,
)
from tlcore.transforms.guards import check_pipeline, enclosing_pipeline
from tlcore.transforms.load import LoadLazyd


class BioIOImageLoaderd(LoadLazyd):
    """The loader of the lazy-loading guide, with its signature, on tlcore's registry.

    ``BioIOImageLoaderd(path_key="original_path", out_key="raw", dask_load=True, dtype=...)``
    reads the same sample keys as :class:`LoadLazyd` (``scene``, ``resolution``, ``C``, ``T``)
    through whichever tlcore reader opens the file, and returns channel-first arrays (so
    ``EnsureChannelFirstd`` is not needed). With ``dask_load``/``lazy_load`` (the default) the
    output is lazy: crop it, then :class:`ComputeDaskd`. With ``dask_load=False`` the
    selected timepoint(s) are read at once, as numpy, for small images or as an eager baseline.
    ``dtype`` converts the pixels (lazily when the output is lazy).

    The lazy-loading guide's form ``BioIOImageLoaderd(keys=["raw"], path_key=...)`` works too:
    ``keys`` names the output key (one key; ``out_key`` and ``keys`` together must agree).
    """

    def __init__(
        self,
        path_key: str = vocabulary.PATH,
        out_key: str = vocabulary.IMAGE,
        dask_load: bool = True,
        lazy_load: bool | None = None,
        dtype: Any = None,
        scene_key: str = vocabulary.SCENE,
        resolution_key: str = vocabulary.RESOLUTION,
        channel_key: str = vocabulary.CHANNELS,
        timepoint_key: str = vocabulary.TIMEPOINTS,
        keys: Any = None,
        **kwargs: Any,
    ) -> None:
        out_key = _out_key(keys, out_key)
        super().__init__(
            keys=out_key,
            path_key=path_key,
            scene_key=scene_key,
            level_key=resolution_key,
            timepoint_key=timepoint_key,
            channel_key=channel_key,
            **kwargs,
        )
        self.out_key = out_key
        self.lazy = dask_load if lazy_load is None else lazy_load
        self.dtype = dtype
        self.guard = self.lazy

    def _lazy_dtype(self) -> np.dtype[Any] | None:
        return numpy_dtype(self.dtype) if self.lazy else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = super().__call__(data)
        if self.lazy:
            return d  # already in ``dtype``: the loader reads into it (``_lazy_dtype``)
        dtype = numpy_dtype(self.dtype)
        for key in self.key_iterator(d):
            d[key] = read_whole(d[key], dtype)
        return d


def _out_key(keys: Any, out_key: str) -> str:
    """The output key from the guide's ``keys=[...]`` form, or ``out_key``."""
    if keys is None:
        return out_key
    given = [keys] if isinstance(keys, str) else list(keys)
    if len(given) != 1:
        raise ValueError(
            f"BioIOImageLoaderd(keys={given!r}): one loader writes one output key; use one "
            "loader per key (keys=['raw']), or out_key='raw'"
        )
    key = str(given[0])
    if out_key != vocabulary.IMAGE and out_key != key:
        raise ValueError(
            f"BioIOImageLoaderd(keys={given!r}, out_key={out_key!r}): both name the output key "
            "and disagree; pass one of them"
        )
    return key


class TlcoreReader:
    """A MONAI-style image reader description for :class:`LoadImaged`: which tlcore reader
    (None: the registry picks), scene, level, and whether the output stays lazy.

    ``OmeZarrReader(level=1, lazy_load=True)`` is the same with the OME-Zarr reader named.
    """

    reader: str | None = None

    def __init__(
        self,
        level: int = 0,
        lazy_load: bool = True,
        scene: int | str | None = None,
        reader: str | None = None,
        spatial_dims: int = 3,
        timepoint: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.level = level
        self.lazy_load = lazy_load
        self.scene = scene
        self.reader = reader if reader is not None else type(self).reader
        self.spatial_dims = spatial_dims
        self.timepoint = timepoint
        self.storage_options = dict(storage_options or {})

    # MONAI's own ``LoadImage(d)`` calls these when given a tlcore reader. It swallows what
    # ``read`` raises into "cannot find a suitable reader", so ``read`` passes the file on and
    # ``get_data`` (called outside MONAI's try) says what to use instead.
    def verify_suffix(self, filename: Any) -> bool:
        return True

    def read(self, data: Any, **kwargs: Any) -> Any:
        return data

    def get_data(self, img: Any) -> Any:
        name = type(self).__name__
        raise MonaiLoaderError(
            f"MONAI's LoadImaged cannot use {name} (for {img!r}): tlcore's readers return lazy "
            f"arrays, which MONAI's LoadImage rejects. Fix: use tlcore.LoadImaged, which takes "
            f"the same arguments (`from tlcore import LoadImaged`; in YAML `_target_: "
            f"tlcore.LoadImaged`, reader: {{_target_: tlcore.{name}, ...}})"
        )


class MonaiLoaderError(TlcoreError, TypeError):
    """A tlcore reader given to MONAI's own ``LoadImage``/``LoadImaged``."""


class OmeZarrReader(TlcoreReader):
    """:class:`TlcoreReader` naming the OME-Zarr reader: the guide's
    ``OmeZarrReader(level=..., lazy_load=True)``."""

    reader = "ome-zarr"


class LoadImaged(MapTransform):
    """A drop-in for MONAI's ``LoadImaged`` (same leading signature) that accepts any tlcore
    reader and returns a lazy array. MONAI's own ``LoadImage`` rejects dask outputs.

    ``d[key]`` holds the path; it is replaced by the image (channel-first, lazy unless the
    reader says ``lazy_load=False``), with metadata under ``d["<key>_meta"]``. The sample's
    ``T``, ``C``, ``scene``, ``resolution`` keys apply as for :class:`LoadLazyd`; a timelapse
    with no ``T`` needs ``TlcoreReader(timepoint=...)``. ``dtype`` converts the pixels
    (lazily). ``image_only``, ``ensure_channel_first`` and the meta-dict arguments of MONAI's
    signature are accepted: the output is always channel-first, metadata goes to ``_meta``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reader: TlcoreReader | str | None = None,
        dtype: Any = None,
        meta_keys: Any = None,
        meta_key_postfix: str = "meta_dict",
        overwriting_keys: bool = False,
        image_only: bool = True,
        ensure_channel_first: bool = False,
        simple_keys: bool = False,
        prune_meta_pattern: str | None = None,
        prune_meta_sep: str = ".",
        allow_missing_keys: bool = False,
        expanduser: bool = True,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        spec = reader if isinstance(reader, TlcoreReader) else TlcoreReader(reader=reader)
        self.spec = spec
        self.dtype = dtype
        self.expanduser = expanduser
        self._loaders = {
            key: BioIOImageLoaderd(
                path_key=str(key),
                out_key=str(key),
                lazy_load=spec.lazy_load,
                dtype=dtype,
                spatial_dims=spec.spatial_dims,
                scene=spec.scene,
                level=spec.level,
                timepoint=spec.timepoint,
                reader=spec.reader,
                storage_options=spec.storage_options,
            )
            for key in self.keys
        }
        for loader in self._loaders.values():
            loader.name = f"LoadImaged({type(spec).__name__})"
            loader.timepoint_argument = f"{type(spec).__name__}(timepoint=...)"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            loader = self._loaders[key]
            loader.guard = False
            if self.spec.lazy_load:
                # The loader's own check would look for itself in the pipeline: check for us.
                pipeline = enclosing_pipeline(self)
                if pipeline is not None:
                    check_pipeline(self, [key], pipeline)
            path = d[key]
            if self.expanduser and isinstance(path, str) and path.startswith("~"):
                import os

                path = os.path.expanduser(path)
            d = loader({**d, key: path})
        return d
