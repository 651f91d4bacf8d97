"""The OME-NGFF spec, to the letter: invalid metadata is an error naming the field, intent that
is unambiguous is read with a warning, labels, origins, plates in bioformats2raw. Every store is
written here by hand (zarr + JSON attributes), in 0.4 (zarr v2) and 0.5 (zarr v3) where it
applies."""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import tlcore
from tlcore import cli
from tlcore_ome_zarr.errors import InvalidOmeZarrError, OmeZarrWarning

VERSIONS = ("0.4", "0.5")


def axes(names: str = "zyx", unit: str | None = "micrometer") -> list[dict[str, Any]]:
    kinds = {"t": "time", "c": "channel"}
    out: list[dict[str, Any]] = []
    for n in names:
        axis: dict[str, Any] = {"name": n, "type": kinds.get(n, "space")}
        if n in "zyx" and unit is not None:
            axis["unit"] = unit
        if n == "t":
            axis["unit"] = "second"
        out.append(axis)
    return out


def multiscale(
    scales: Sequence[Sequence[float]],
    names: str = "zyx",
    unit: str | None = "micrometer",
    name: str | None = None,
) -> dict[str, Any]:
    """A valid multiscales entry: dataset i is array path str(i) with scales[i]."""
    ms: dict[str, Any] = {
        "axes": axes(names, unit),
        "datasets": [
            {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": list(s)}]}
            for i, s in enumerate(scales)
        ],
    }
    if name is not None:
        ms["name"] = name
    return ms


def group_attrs(version: str, key: str, value: Any) -> dict[str, Any]:
    """Attributes holding ``key: value`` where the version puts them."""
    if version == "0.5":
        return {"ome": {"version": "0.5", key: value}}
    if key == "multiscales":
        value = [{**m, "version": "0.4"} if isinstance(m, dict) else m for m in value]
    return {key: value}


def write_image(
    path: Path,
    version: str,
    shapes: Mapping[str, Sequence[int]],
    entries: Sequence[Any] | None = None,
    *,
    dimension_names: Sequence[str] | bool | None = True,
    names: str = "zyx",
    dtype: str = "uint16",
    seed: int = 0,
) -> zarr.Group:
    """An image group at ``path``: arrays of ``shapes`` (path -> shape) filled with known values,
    and ``entries`` as its multiscales list (written as given, valid or not)."""
    fmt = 3 if version == "0.5" else 2
    group = zarr.open_group(str(path), mode="w-", zarr_format=fmt)
    rng = np.random.default_rng(seed)
    for array_path, shape in shapes.items():
        dims: Any = None
        if fmt == 3 and dimension_names is True:
            dims = list(names) if len(names) == len(shape) else None
        elif fmt == 3 and dimension_names not in (None, False, True):
            dims = list(dimension_names)  # type: ignore[arg-type]
        arr = group.create_array(array_path, shape=tuple(shape), dtype=dtype, dimension_names=dims)
        arr[...] = rng.integers(0, 1000, size=tuple(shape)).astype(dtype)
    if entries is not None:
        group.attrs.update(group_attrs(version, "multiscales", copy.deepcopy(list(entries))))
    return group


# -- helpers above, tests below ------------------------------------------------------------------
@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _valid(tmp_path: Path, version: str) -> tuple[Path, dict[str, Any]]:
    return tmp_path / f"img-{version}.ome.zarr", multiscale([[2.0, 0.5, 0.5], [2.0, 1.0, 1.0]])


SHAPES = {"0": (2, 16, 16), "1": (2, 8, 8)}


def _break(ms: dict[str, Any], how: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Break a valid entry; returns (entry, write_image kwargs, the field the error must name)."""
    ds0 = ms["datasets"][0]
    kwargs: dict[str, Any] = {}
    if how == "no-transforms":
        del ds0["coordinateTransformations"]
        field = "multiscales[0].datasets[0].coordinateTransformations"
    elif how == "empty-transforms":
        ds0["coordinateTransformations"] = []
        field = "multiscales[0].datasets[0].coordinateTransformations"
    elif how == "no-scale-values":
        ds0["coordinateTransformations"] = [{"type": "scale"}]
        field = "multiscales[0].datasets[0].coordinateTransformations[0].scale"
    elif how == "empty-scale":
        ds0["coordinateTransformations"][0]["scale"] = []
        field = "multiscales[0].datasets[0].coordinateTransformations[0].scale"
    elif how == "short-scale":
        ds0["coordinateTransformations"][0]["scale"] = [0.5, 0.5]
        field = "multiscales[0].datasets[0].coordinateTransformations[0].scale"
    elif how == "two-scales":
        ds0["coordinateTransformations"].append({"type": "scale", "scale": [1, 2, 2]})
        field = "multiscales[0].datasets[0].coordinateTransformations[1].type"
    elif how == "string-in-scale":
        ds0["coordinateTransformations"][0]["scale"] = [2.0, "invalid", 0.5]
        field = "multiscales[0].datasets[0].coordinateTransformations[0].scale[1]"
    elif how == "translation-first":
        ds0["coordinateTransformations"].insert(0, {"type": "translation", "translation": [0] * 3})
        field = "multiscales[0].datasets[0].coordinateTransformations[0].type"
    elif how == "no-axes":
        del ms["axes"]
        field = "multiscales[0].axes"
    elif how == "no-path":
        del ds0["path"]
        field = "multiscales[0].datasets[0].path"
    elif how == "missing-array":
        ds0["path"] = "nope"
        field = "multiscales[0].datasets[0].path"
    elif how == "ndim-mismatch":
        ms["axes"] = ms["axes"][1:]
        for ds in ms["datasets"]:
            ds["coordinateTransformations"][0]["scale"] = [1.0, 1.0]
        field = "multiscales[0].axes"
    elif how == "duplicate-axes":
        ms["axes"][0] = dict(ms["axes"][1])
        field = "multiscales[0].axes"
    elif how == "unshuffleable-levels":
        kwargs["shapes"] = {"0": (2, 16, 8), "1": (2, 8, 16)}
        field = "multiscales[0].datasets"
    elif how == "short-global-scale":
        ms["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 1.0]}]
        field = "multiscales[0].coordinateTransformations[0].scale"
    elif how == "dimension-names-disagree":
        kwargs["dimension_names"] = ["z", "x", "y"]
        field = "multiscales[0].axes"
    else:
        raise AssertionError(how)
    return ms, kwargs, field


BROKEN = [
    "no-transforms", "empty-transforms", "no-scale-values", "empty-scale", "short-scale",
    "two-scales", "string-in-scale", "translation-first", "no-axes", "no-path", "missing-array",
    "ndim-mismatch", "duplicate-axes", "unshuffleable-levels", "short-global-scale",
    "dimension-names-disagree",
]  # fmt: skip


@pytest.mark.parametrize("how", BROKEN)
def test_spec_invalid_metadata_is_an_error_naming_the_field(
    tmp_path: Path, version: str, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "dimension-names-disagree" and version == "0.4":
        pytest.skip("zarr v2 arrays have no dimension_names")
    path, ms = _valid(tmp_path, version)
    ms, kwargs, field = _break(ms, how)
    write_image(path, version, kwargs.pop("shapes", SHAPES), [ms], **kwargs)
    field = ("ome." if version == "0.5" else "") + field
    with pytest.raises(InvalidOmeZarrError) as info:
        tlcore.open_lazy(path)
    message = str(info.value)
    assert str(path) in message and f"{field}:" in message, message
    assert f"OME-NGFF {version}" in message or how == "no-axes"
    # The command line says the same and exits non-zero.
    assert cli.main(["info", str(path)]) == 2
    assert f"{field}:" in capsys.readouterr().err


def test_two_scales_are_never_multiplied_into_a_pixel_size(tmp_path: Path, version: str) -> None:
    path, ms = _valid(tmp_path, version)
    ms["datasets"][0]["coordinateTransformations"].append({"type": "scale", "scale": [1, 2, 2]})
    write_image(path, version, SHAPES, [ms])
    with pytest.raises(InvalidOmeZarrError, match="only one scale"):
        tlcore.open_lazy(path)


def test_unknown_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "future.ome.zarr"
    group = write_image(path, "0.5", SHAPES)
    group.attrs.update({"ome": {"version": "0.9", "multiscales": [multiscale([[1, 1, 1]])]}})
    with pytest.raises(InvalidOmeZarrError, match=r"ome\.version: unsupported version '0\.9'"):
        tlcore.list_scenes(path)


@pytest.mark.parametrize(
    ("legacy", "axes_meta", "shapes", "shape"),
    [("0.3", ["z", "y", "x"], {"0": (2, 16, 16), "1": (2, 8, 8)}, (1, 1, 2, 16, 16)),
     ("0.1", None, {"0": (1, 1, 2, 16, 16), "1": (1, 1, 2, 8, 8)}, (1, 1, 2, 16, 16))],
)  # fmt: skip
def test_versions_before_0_4_have_no_physical_sizes(
    tmp_path: Path, legacy: str, axes_meta: Any, shapes: dict[str, Any], shape: tuple[int, ...]
) -> None:
    path = tmp_path / f"v{legacy}.ome.zarr"
    group = write_image(path, "0.4", shapes)
    entry: dict[str, Any] = {"version": legacy, "datasets": [{"path": "0"}, {"path": "1"}]}
    if axes_meta is not None:
        entry["axes"] = axes_meta
    group.attrs["multiscales"] = [entry]
    image = tlcore.open_lazy(path)
    assert image.shape == shape and image.pixel_sizes == (None, None, None)
    assert image.origin is None and tlcore.time_axis(path).interval is None
    assert tlcore.levels(path)[1].downsampling == (1.0, 1.0, 1.0, 2.0, 2.0)


def test_valid_store_reads_its_scale_and_nothing_else(tmp_path: Path, version: str) -> None:
    path, ms = _valid(tmp_path, version)
    write_image(path, version, SHAPES, [ms])
    with warnings.catch_warnings():
        warnings.simplefilter("error", OmeZarrWarning)
        image = tlcore.open_lazy(path, level=1)
    assert image.pixel_sizes == (2.0, 1.0, 1.0) and image.origin is None and image.labels == {}
    assert [lv.downsampling for lv in tlcore.levels(path)][1] == (1.0, 1.0, 1.0, 2.0, 2.0)


def test_no_unit_means_no_pixel_size(tmp_path: Path, version: str) -> None:
    path = tmp_path / "nounit.ome.zarr"
    write_image(path, version, SHAPES, [multiscale([[2, 0.5, 0.5], [2, 1, 1]], unit=None)])
    assert tlcore.open_lazy(path).pixel_sizes == (None, None, None)


@pytest.mark.parametrize(("unit", "size"), [("micron", 0.5), ("um", 0.5), ("furlong", None)])
def test_nonstandard_units_are_read_with_a_warning(
    tmp_path: Path, version: str, unit: str, size: float | None
) -> None:
    path = tmp_path / f"{unit}.ome.zarr"
    write_image(path, version, SHAPES, [multiscale([[2, 0.5, 0.5], [2, 1, 1]], unit=unit)])
    with pytest.warns(OmeZarrWarning, match=rf"axes\[2\]\.unit: unit '{unit}'"):
        image = tlcore.open_lazy(path)
    assert image.pixel_sizes.x == (pytest.approx(size) if size else None)


def test_datasets_listed_smallest_first_are_read_largest_first(
    tmp_path: Path, version: str
) -> None:
    path = tmp_path / "reversed.ome.zarr"
    ms = multiscale([[2.0, 1.0, 1.0], [2.0, 0.5, 0.5]])  # "0" is the small one
    write_image(path, version, {"0": (2, 8, 8), "1": (2, 16, 16)}, [ms])
    with pytest.warns(OmeZarrWarning, match="not listed from the highest resolution"):
        levels = tlcore.levels(path)
    assert [lv.shape for lv in levels] == [(1, 1, 2, 16, 16), (1, 1, 2, 8, 8)]
    assert levels[1].downsampling == (1.0, 1.0, 1.0, 2.0, 2.0)
    image = tlcore.open_lazy(path, level=0)
    assert image.pixel_sizes == (2.0, 0.5, 0.5) and image.metadata["array_path"] == "1"
    want = np.asarray(zarr.open_array(str(path), path="1", mode="r")[...])
    assert np.array_equal(image.data.compute()[0, 0], want)


def test_0_5_array_without_dimension_names_is_read_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "nodims.ome.zarr"
    write_image(path, "0.5", SHAPES, [multiscale([[2, 0.5, 0.5], [2, 1, 1]])], dimension_names=None)
    with pytest.warns(OmeZarrWarning, match="no dimension_names"):
        assert tlcore.open_lazy(path).shape == (1, 1, 2, 16, 16)


def test_translation_is_the_origin(tmp_path: Path, version: str) -> None:
    path = tmp_path / "moved.ome.zarr"
    ms = multiscale([[2.0, 0.5, 0.5], [2.0, 1.0, 1.0]], unit="nanometer")
    for i, ds in enumerate(ms["datasets"]):
        ds["coordinateTransformations"].append(
            {"type": "translation", "translation": [100.0, 10.0 + i * 0.25, 20.0 + i * 0.25]}
        )
    ms["coordinateTransformations"] = [
        {"type": "scale", "scale": [1.0, 2.0, 2.0]},
        {"type": "translation", "translation": [0.0, 1000.0, 0.0]},
    ]
    write_image(path, version, SHAPES, [ms])
    # world = (index * s + t) * s_global + t_global, in nanometres -> micrometres
    zero, one = tlcore.open_lazy(path, level=0), tlcore.open_lazy(path, level=1)
    assert zero.pixel_sizes == pytest.approx((0.002, 0.001, 0.001))
    assert zero.origin == pytest.approx((0.1, 1.02, 0.04))
    assert one.origin == pytest.approx((0.1, 1.0205, 0.0405))


def test_every_multiscales_entry_is_a_scene(tmp_path: Path, version: str) -> None:
    path = tmp_path / "two.ome.zarr"
    first = multiscale([[1, 0.5, 0.5]], name="raw")
    second = multiscale([[1, 1, 1]], name="binned")
    second["datasets"][0]["path"] = "b"
    write_image(path, version, {"0": (2, 16, 16), "b": (2, 8, 8)}, [first, second])
    assert tlcore.list_scenes(path) == ["raw", "binned"]
    binned = tlcore.open_lazy(path, scene="binned")
    assert binned.shape == (1, 1, 2, 8, 8) and binned.pixel_sizes == (1.0, 1.0, 1.0)
    want = np.asarray(zarr.open_array(str(path), path="b", mode="r")[...])
    assert np.array_equal(binned.data.compute()[0, 0], want)


# -- labels ---------------------------------------------------------------------------------------
def _write_labels(image: Path, version: str, labels: Mapping[str, Mapping[str, Any]]) -> None:
    """labels: name -> {"shapes": {path: shape}, "scales": [...], "names": "zyx"}."""
    group = zarr.open_group(str(image), mode="r+")
    fmt = group.metadata.zarr_format
    root = group.require_group("labels")
    root.attrs.update(group_attrs(version, "labels", list(labels)))
    for seed, (name, spec) in enumerate(labels.items()):
        names = spec.get("names", "zyx")
        ms = multiscale(spec["scales"], names=names)
        for ds, p in zip(ms["datasets"], spec["shapes"]):
            ds["path"] = p
        write_image(image / "labels" / name, version, spec["shapes"], [ms], names=names,
                    dtype="int32", seed=100 + seed)  # fmt: skip
        assert fmt == zarr.open_group(str(image / "labels" / name), mode="r").metadata.zarr_format


def test_labels_are_named_arrays_on_the_image_grid(tmp_path: Path, version: str) -> None:
    path, ms = _valid(tmp_path, version)
    write_image(path, version, SHAPES, [ms])
    _write_labels(path, version, {
        "cells": {"shapes": {"0": (2, 16, 16), "1": (2, 8, 8)},
                  "scales": [[2.0, 0.5, 0.5], [2.0, 1.0, 1.0]]},
        "coarse": {"shapes": {"0": (2, 8, 8)}, "scales": [[2.0, 1.0, 1.0]]},
    })  # fmt: skip
    with pytest.warns(OmeZarrWarning, match="label 'coarse' is left out at level 0"):
        zero = tlcore.open_lazy(path, level=0)
    assert sorted(zero.labels) == ["cells"] and "coarse" in zero.metadata["labels_skipped"]
    one = tlcore.open_lazy(path, level=1)
    assert sorted(one.labels) == ["cells", "coarse"]
    for image, name, array_path in [(zero, "cells", "0"), (one, "cells", "1"),
                                    (one, "coarse", "0")]:  # fmt: skip
        label = image.labels[name]
        assert label.shape == image.shape and label.dtype == np.int32
        want = np.asarray(zarr.open_array(str(path / "labels" / name), path=array_path)[...])
        box = (0, 0, slice(1, 2), slice(2, 7), slice(3, 8))
        assert np.array_equal(label[box].compute(), want[1:2, 2:7, 3:8])
        assert image.data[box].compute().shape == label[box].compute().shape


def test_a_label_off_the_grid_is_left_out_not_resampled(tmp_path: Path, version: str) -> None:
    path, ms = _valid(tmp_path, version)
    write_image(path, version, SHAPES, [ms])
    _write_labels(path, version, {
        "shifted": {"shapes": {"0": (2, 16, 16)}, "scales": [[2.0, 0.25, 0.25]]},
    })  # fmt: skip
    with pytest.warns(OmeZarrWarning, match="labels are not resampled"):
        image = tlcore.open_lazy(path)
    assert image.labels == {} and "shifted" in image.metadata["labels_skipped"]


# -- plates and bioformats2raw -------------------------------------------------------------------
OME_XML = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">{images}</OME>"""
XML_IMAGE = """<Image ID="Image:{i}" Name="field {name}"><Pixels ID="Pixels:{i}"
 DimensionOrder="XYZCT" Type="uint16" SizeX="16" SizeY="16" SizeZ="2" SizeC="1" SizeT="1">
 <Channel ID="Channel:{i}:0" Name="GFP" SamplesPerPixel="1"/><MetadataOnly/></Pixels></Image>"""


def write_plate(
    path: Path,
    version: str,
    wells: Sequence[str],
    written: Sequence[str],
    *,
    bioformats2raw: bool = False,
) -> list[str]:
    """A plate listing ``wells`` of which only ``written`` exist, one field each; returns the
    field paths written."""
    fmt = 3 if version == "0.5" else 2
    root = zarr.open_group(str(path), mode="w-", zarr_format=fmt)
    plate = {
        "rows": [{"name": r} for r in "AB"], "columns": [{"name": c} for c in "12"],
        "wells": [{"path": w, "rowIndex": "AB".index(w[0]), "columnIndex": int(w[-1]) - 1}
                  for w in wells],
    }  # fmt: skip
    attrs = group_attrs(version, "plate", plate)
    if bioformats2raw:
        (attrs["ome"] if version == "0.5" else attrs)["bioformats2raw.layout"] = 3
    root.attrs.update(attrs)
    fields = []
    for w in dict.fromkeys(written):
        well = root.require_group(w)
        well.attrs.update(group_attrs(version, "well", {"images": [{"path": "0"}]}))
        ms = multiscale([[2.0, 0.5, 0.5]])
        write_image(path / w / "0", version, {"0": (2, 16, 16)}, [ms], seed=len(fields))
        fields.append(f"{w}/0")
    if bioformats2raw:
        ome = root.require_group("OME")
        ome.attrs.update(group_attrs(version, "series", fields))
        xml = OME_XML.format(images="".join(XML_IMAGE.format(i=i, name=f) for i, f in
                                            enumerate(fields)))  # fmt: skip
        (path / "OME" / "METADATA.ome.xml").write_text(xml)
    return fields


def test_a_plate_in_bioformats2raw_gives_its_well_paths(tmp_path: Path, version: str) -> None:
    path = tmp_path / "plate.zarr"
    fields = write_plate(path, version, ["A/1", "B/2"], ["A/1", "B/2"], bioformats2raw=True)
    assert tlcore.list_scenes(path) == fields == ["A/1/0", "B/2/0"]
    image = tlcore.open_lazy(path, scene="B/2/0")
    assert image.scene_name == "field B/2/0" and image.channel_names == ("GFP",)
    want = np.asarray(zarr.open_array(str(path / "B/2/0"), path="0", mode="r")[...])
    assert np.array_equal(image.data.compute()[0, 0], want)


def test_an_unwritten_well_is_skipped_with_a_warning(tmp_path: Path, version: str) -> None:
    path = tmp_path / "partial.ome.zarr"
    write_plate(path, version, ["A/1", "A/2", "B/1"], ["A/1", "B/1"])
    with pytest.warns(OmeZarrWarning, match="well 'A/2'.*not written"):
        assert tlcore.list_scenes(path) == ["A/1/0", "B/1/0"]
    assert tlcore.open_lazy(path, scene="B/1/0").shape == (1, 1, 2, 16, 16)


def test_a_repeated_well_is_read_once(tmp_path: Path, version: str) -> None:
    path = tmp_path / "dupes.ome.zarr"
    write_plate(path, version, ["A/1", "B/2", "A/1"], ["A/1", "B/2"])
    with pytest.warns(OmeZarrWarning, match=r"wells\[2\] repeats well 'A/1'"):
        assert tlcore.list_scenes(path) == ["A/1/0", "B/2/0"]


def test_a_well_without_path_names_the_field(tmp_path: Path, version: str) -> None:
    path = tmp_path / "nopath.ome.zarr"
    write_plate(path, version, ["A/1"], ["A/1"])
    group = zarr.open_group(str(path), mode="r+")
    plate = dict(group.attrs.asdict())
    inner = plate["ome"] if version == "0.5" else plate
    inner["plate"]["wells"].append({"rowIndex": 1, "columnIndex": 1})
    group.attrs.update(plate)
    field = ("ome." if version == "0.5" else "") + "plate.wells[1].path"
    with pytest.raises(InvalidOmeZarrError, match=re.escape(field)):
        tlcore.list_scenes(path)
