"""What the conformance kit does not know: layouts, units, metadata edge cases, bad stores."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

import tlcore
from tlcore import Source
from tlcore.testing import write_ome_zarr
from tlcore_ome_zarr.array import ZarrArrayReader
from tlcore_ome_zarr.metadata import parse_multiscales
from tlcore_ome_zarr.scene import SceneMeta, read_scene
from tlcore_ome_zarr.store import read_layout
from tlcore_ome_zarr.units import LENGTH_UM, length_um, time_s


def read_scene_meta(path: Path, scene: int = 0) -> SceneMeta:
    source = Source.from_any(path)
    return read_scene(source, read_layout(source), scene)


@pytest.mark.parametrize(
    ("unit", "um", "noted"),
    [("micrometer", 1.0, False), ("nanometer", 1e-3, False), ("millimeter", 1e3, False),
     ("angstrom", 1e-4, False), ("inch", 25400.0, False), ("kilometer", 1e9, False),
     ("micron", 1.0, True), ("µm", 1.0, True), ("micrometre", 1.0, True),
     ("furlong", None, True), (None, None, False)],
)  # fmt: skip
def test_length_units(unit: str | None, um: float | None, noted: bool) -> None:
    factor, note = length_um(unit)
    assert factor == (pytest.approx(um) if um is not None else None)
    assert (note is not None) == noted


@pytest.mark.parametrize("name", sorted(LENGTH_UM))
def test_every_ngff_length_unit_converts_without_a_note(name: str) -> None:
    factor, note = length_um(name)
    assert factor == LENGTH_UM[name] and factor > 0 and note is None


@pytest.mark.parametrize(
    ("unit", "seconds", "noted"),
    [("millisecond", 1e-3, False), ("minute", 60.0, False), ("hour", 3600.0, False),
     ("second", 1.0, False), ("microsecond", 1e-6, False), ("day", 86400.0, False),
     ("ms", 1e-3, True), ("micrometer", None, True), (None, None, False)],
)  # fmt: skip
def test_time_units(unit: str | None, seconds: float | None, noted: bool) -> None:
    factor, note = time_s(unit)
    assert factor == (pytest.approx(seconds) if seconds is not None else None)
    assert (note is not None) == noted


def test_multiscale_level_transform_applies_after_the_datasets() -> None:
    attrs = {
        "multiscales": [{
            "version": "0.4",
            "axes": [{"name": "y", "type": "space", "unit": "micrometer"},
                     {"name": "x", "type": "space", "unit": "micrometer"}],
            "datasets": [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [2.0, 1.0]},
                {"type": "translation", "translation": [5, 5]}]}],
            "coordinateTransformations": [{"type": "scale", "scale": [0.5, 0.25]},
                                          {"type": "translation", "translation": [1, 2]}],
        }]
    }  # fmt: skip
    (ms,) = parse_multiscales(attrs)
    # world = (index * s_d + t_d) * s_g + t_g: scales multiply, offsets follow
    assert ms.datasets[0].scale == (1.0, 0.25) and ms.dims() == "YX"
    assert ms.datasets[0].translation == (3.5, 3.25)


def test_unmappable_axes_are_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "spectral.ome.zarr"
    root = zarr.open_group(str(store), mode="w-", zarr_format=2)
    root.create_array("0", shape=(3, 8, 8), dtype="uint8")
    root.attrs["multiscales"] = [{
        "version": "0.4",
        "axes": [{"name": "lambda", "type": "spectral"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "0",
                      "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}],
    }]  # fmt: skip
    with pytest.raises(tlcore.ReaderError, match=r"spectral.ome.zarr.*axes \['lambda', 'y', 'x'\]"):
        tlcore.open_lazy(store)


def write_plate(path: Path) -> None:
    root = zarr.open_group(str(path), mode="w-", zarr_format=2)
    wells = [("A", "1"), ("B", "2")]
    root.attrs["plate"] = {
        "version": "0.4", "rows": [{"name": "A"}, {"name": "B"}],
        "columns": [{"name": "1"}, {"name": "2"}],
        "wells": [{"path": f"{r}/{c}", "rowIndex": "AB".index(r), "columnIndex": int(c) - 1}
                  for r, c in wells],
    }  # fmt: skip
    for r, c in wells:
        well = root.require_group(f"{r}/{c}")
        well.attrs["well"] = {"images": [{"path": "0"}, {"path": "1"}], "version": "0.4"}
        for f in ("0", "1"):
            write_ome_zarr(path / r / c / f, (2, 1, 1, 16, 16), version="0.4", seed=ord(r) + int(f))
            # write_ome_zarr made a standalone group; the plate's well is its parent


def test_plate_fields_are_scenes(tmp_path: Path) -> None:
    plate = tmp_path / "plate.ome.zarr"
    write_plate(plate)
    assert tlcore.list_scenes(plate) == ["A/1/0", "A/1/1", "B/2/0", "B/2/1"]
    image = tlcore.open_lazy(plate, scene="B/2/1")
    assert image.shape == (2, 1, 1, 16, 16) and image.scene_index == 3
    want = np.asarray(zarr.open_array(str(plate / "B/2/1"), path="0", mode="r")[...])
    assert np.array_equal(image.data.compute()[:, 0, 0], want[:, 0, 0])


def test_bioformats2raw_without_series_list(testdata: Path, tmp_path: Path) -> None:
    store = tmp_path / "copy.zarr"
    shutil.copytree(testdata / "ome-zarr" / "fake-series-2.zarr", store)
    shutil.rmtree(store / "OME")  # no series list, no OME-XML: groups 0, 1 are enumerated
    assert tlcore.list_scenes(store) == ["Image:0", "Image:1"]
    assert tlcore.levels(store, scene=1)[1].shape == (1, 1, 1, 256, 256)


def test_rewritten_store_is_read_afresh(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=(2, 1, 1, 8, 8), chunks=(1, 1, 1, 8, 8))
    assert tlcore.open_lazy(store).shape == (2, 1, 1, 8, 8)
    shutil.rmtree(store)
    write_ome_zarr(store, (3, 1, 1, 8, 8), (1, 1, 1, 8, 8))
    assert tlcore.open_lazy(store).shape == (3, 1, 1, 8, 8)


def test_store_is_opened_read_only(synthetic_store: Callable[..., Path]) -> None:
    store = synthetic_store(shape=(2, 1, 2, 16, 16), chunks=(1, 1, 1, 8, 8))
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    image = tlcore.open_lazy(store)
    image.data.compute()
    assert before == {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    reader = ZarrArrayReader(Source.from_any(store), read_scene_meta(store).arrays[0], "TCZYX")
    assert reader.handle.store.read_only
    with pytest.raises(ValueError, match=r"(?i)read.only"):
        reader.handle[0, 0, 0, 0, 0] = 1


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda p: p.mkdir(), "not a zarr store"),
        (lambda p: zarr.open_group(str(p), mode="w-").attrs.update({"x": 1}),
         "no OME-NGFF 'multiscales', 'bioformats2raw.layout' or 'plate' metadata"),
        (lambda p: (p.mkdir(), (p / ".zgroup").write_text("{oops")), "unreadable zarr metadata"),
        (lambda p: (p.mkdir(), (p / "zarr.json").write_text("{oops")), "unreadable zarr metadata"),
        (lambda p: zarr.create_array(str(p), shape=(2,), dtype="u1", zarr_format=3),
         "one zarr array inside a store"),
        (lambda p: zarr.create_array(str(p), shape=(2,), dtype="u1", zarr_format=2),
         "one zarr array inside a store"),
    ],
)  # fmt: skip
def test_bad_stores_are_refused_with_a_reason(
    tmp_path: Path, setup: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / "bad.ome.zarr"
    setup(path)
    with pytest.raises(tlcore.NoReaderError) as info:
        tlcore.open_lazy(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_missing_chunks_read_as_fill_value(testdata: Path) -> None:
    # image-04.zarr has metadata but no chunk files: zarr's fill value, as the format defines
    image = tlcore.open_lazy(testdata / "ome-zarr" / "image-04.zarr", level=1)
    assert image.shape == (1, 1, 2, 32, 32)
    assert float(image.data.sum().compute()) == 0.0
