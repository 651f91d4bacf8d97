"""Manifests: every source form of the guide, cells coerced whatever pandas guessed, errors that
name the manifest, row and column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tlcore.sampling.manifest import (
    Columns,
    ManifestError,
    parse_channels,
    parse_scene,
    read_manifest,
)

GUIDE_CSV = """path,channel,split,scene,resolution,start,stop
images/timelapse1.nd2,0,train,0,0,0,500
/data/timelapse2.czi,"0,1,2",train,0,1,10,200
s3://bucket/timelapse3.ome.zarr,1,val,0,0,0,-1
/data/timelapse4.nd2,2,test,1,0,0,100
"""


def test_the_guides_csv_with_a_split_column(tmp_path: Path) -> None:
    csv = tmp_path / "meta" / "manifest.csv"
    csv.parent.mkdir()
    csv.write_text(GUIDE_CSV)
    rows = read_manifest(csv)
    assert [len(rows[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    first, second = rows["train"]
    # Relative paths resolve against the manifest's folder; absolute and URLs stay.
    assert first.path == str(tmp_path / "meta" / "images" / "timelapse1.nd2")
    assert second.path == "/data/timelapse2.czi"
    assert rows["val"][0].path == "s3://bucket/timelapse3.ome.zarr"
    assert first.channels == (0,) and second.channels == (0, 1, 2)
    assert second.resolution == 1 and (second.start, second.stop) == (10, 200)
    assert rows["val"][0].stop == -1
    assert rows["test"][0].scene == 1 and rows["test"][0].row == 3
    assert "manifest.csv row 3" in rows["test"][0].where()


def test_one_csv_per_split(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / f"{split}.csv").write_text(f"path\n{split}_a.zarr\n{split}_b.zarr\n")
    rows = read_manifest({"train": tmp_path / "train.csv", "val": str(tmp_path / "val.csv")})
    assert [Path(r.path).name for r in rows["train"]] == ["train_a.zarr", "train_b.zarr"]
    assert [Path(r.path).name for r in rows["val"]] == ["val_a.zarr", "val_b.zarr"]
    assert rows["test"] == []


def test_inline_dict_meta_as_in_the_guide() -> None:
    rows = read_manifest(
        {
            "dict_meta": {
                "path": ["/data/file1.nd2", "/data/file2.czi"],
                "channel": ["0", "1,2"],
                "split": ["train", "val"],
            }
        }
    )
    assert rows["train"][0].channels == (0,) and rows["val"][0].channels == (1, 2)
    assert rows["val"][0].origin == "dict_meta"


def test_dataframe_cells_are_coerced_whatever_pandas_guessed() -> None:
    frame = pd.DataFrame(
        {
            "path": ["a.zarr", "b.zarr", "c.zarr"],
            "split": ["train", "TRAIN", "train"],
            "scene": [0.0, "Image:1", None],  # a float, an id, missing
            "channel": [0, "0,1", float("nan")],  # int, comma list, empty
            "start": [1.0, float("nan"), 2],
            "stop": [float("nan"), 5.0, -1],
            "well": ["A1", "B2", None],
            "dose": [0.5, 1, None],
        }
    )
    rows = read_manifest(frame, Columns(extra_columns=("well", "dose")))["train"]
    assert [r.scene for r in rows] == [0, "Image:1", 0]
    assert [r.channels for r in rows] == [(0,), (0, 1), None]
    assert [(r.start, r.stop) for r in rows] == [(1, None), (None, 5), (2, -1)]
    assert [r.extras["well"] for r in rows] == ["A1", "B2", ""]
    assert rows[0].extras["dose"] == 0.5 and rows[1].extras["dose"] == 1
    assert rows[2].extras["dose"] != rows[2].extras["dose"]  # NaN: a number column stays numeric


def test_configurable_column_names_and_no_split_column(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("file,ch,t0,t1,lvl,pos\nx.zarr,GFP,3,9,1,Pos2\n")
    columns = Columns(
        img_path_column="file",
        channel_column="ch",
        time_start_column="t0",
        time_stop_column="t1",
        resolution_column="lvl",
        scene_column="pos",
        split_column=None,
    )
    (row,) = read_manifest(csv, columns)["train"]
    assert row.channels == ("GFP",) and (row.start, row.stop) == (3, 9)
    assert row.resolution == 1 and row.scene == "Pos2"


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("file,split\na.zarr,train\n", "no path column 'path'"),
        ("path\na.zarr\n", "no split column 'split'"),
        ("path,split\na.zarr,training\n", r"row 0, column 'split': split 'training' is not one"),
        ("path,split,start\na.zarr,train,0\nb.zarr,train,first\n", r"row 1, column 'start'"),
        ("path,split,start,stop\na.zarr,train,5,5\n", "start 5 is not before stop 5"),
        ("path,split,resolution\na.zarr,train,-1\n", "resolution -1 is negative"),
        ("path,split\n,train\n", r"row 0, column 'path': the path is empty"),
        ('path,split,channel\na.zarr,train,"0,,1"\n', "empty channel"),
    ],
)
def test_bad_cells_name_the_manifest_row_and_column(tmp_path: Path, csv: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(csv)
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(path)
    assert "bad.csv" in str(info.value)


def test_missing_manifest_and_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="keys \\['training'\\]"):
        read_manifest({"training": "x.csv"})
    with pytest.raises(ManifestError, match="extra_columns \\['cell_id'\\]"):
        read_manifest(
            pd.DataFrame({"path": ["a"], "split": ["train"]}), Columns(extra_columns=("cell_id",))
        )


def test_cell_parsers() -> None:
    assert parse_channels("0, 2 ,4") == (0, 2, 4)
    assert parse_channels("DAPI,1") == ("DAPI", 1)
    assert parse_channels([1, "2"]) == (1, 2)
    assert parse_channels("all") is None and parse_channels("") is None
    assert parse_scene("3") == 3 and parse_scene("3.0") == 3 and parse_scene("XYPos:1") == "XYPos:1"


def test_per_file_reader_options(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(
        'path,split,options\na.czi,train,czi_tiles=true\nb.lif,train,"lif_mosaic=tiles; n=3"\n'
        'c.tif,train,"{""tiff_dims"": ""TYX""}"\nd.zarr,train,\n'
    )
    rows = read_manifest(csv)["train"]
    assert [r.options for r in rows] == [
        {"czi_tiles": True},
        {"lif_mosaic": "tiles", "n": 3},
        {"tiff_dims": "TYX"},
        {},
    ]
    csv.write_text("path,split,options\na.czi,train,czi_tiles\n")
    with pytest.raises(ManifestError, match=r"row 0, column 'options': .*key=value"):
        read_manifest(csv)
