"""A plugin that lives outside the repository is found through a real entry point, with no
change to tlcore; a broken one warns and leaves the others working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tlcore
from tlcore import PluginLoadWarning, Registry

PLUGIN = textwrap.dedent(
    """
    import numpy as np
    import tlcore
    from tlcore.lazy import ArrayReader, as_dask

    class _Reader(ArrayReader):
        def __init__(self, path):
            super().__init__((2, 1, 1, 8, 8), "uint8", (1, 1, 1, 8, 8))
            self.path = path
        def identity(self):
            return (self.path,)
        def _open(self):
            raw = open(self.path, "rb").read()[4:132]
            return np.frombuffer(raw, "uint8").reshape(2, 1, 1, 8, 8)
        def _read(self, handle, region):
            return handle[region]

    @tlcore.hookimpl
    def reader_info():
        return tlcore.ReaderInfo("rawcube", (".rawcube",), description="test-only format")

    @tlcore.hookimpl
    def can_open(source):
        return source.read_bytes(0, 4) == b"RAWC" or "missing RAWC magic"

    @tlcore.hookimpl
    def open_lazy(source, scene, level):
        return tlcore.LazyImage(
            data=as_dask(_Reader(source.uri)), scene="Image:0", level=0,
            time_axis=tlcore.TimeAxis(2, interval=10.0), pixel_sizes=tlcore.PixelSizes(),
            channel_names=("gray",))
    """
)


def make_distribution(site: Path, module: str, dist: str, entry: str, body: str) -> None:
    """Write an installed distribution (module + dist-info with entry points) into ``site``,
    exactly what pip leaves in site-packages."""
    (site / f"{module}.py").write_text(body)
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[tlcore.readers]\n{entry} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "tlcore_rawcube", "tlcore-rawcube", "rawcube", PLUGIN)
    make_distribution(
        site, "tlcore_broken", "tlcore-broken", "broken", "raise ImportError('libfoo.so missing')\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.fixture
def cube(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.rawcube"
    path.write_bytes(b"RAWC" + bytes(range(128)))
    return path


def test_external_plugin_is_discovered_and_reads(site: Path, cube: Path) -> None:
    with pytest.warns(PluginLoadWarning, match=r"'broken'.*libfoo.so missing"):
        reg = Registry()
        records = {r.name: r for r in reg.records()}
    assert records["rawcube"].status == "loaded"
    assert records["rawcube"].distribution == "tlcore-rawcube"
    assert records["rawcube"].version == "1.2.3"
    assert records["broken"].status == "failed" and "libfoo.so" in (records["broken"].error or "")
    assert records["ome-zarr"].status == "loaded"  # the others keep working

    image = tlcore.open_lazy(cube, registry=reg)
    assert image.reader == "rawcube" and image.shape == (2, 1, 1, 8, 8)
    assert image.data[1, 0, 0, 0, :3].compute().tolist() == [64, 65, 66]


def test_cli_lists_external_and_broken_plugins(site: Path, cube: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["rawcube"]["status"] == "loaded"
    assert plugins["rawcube"]["extensions"] == [".rawcube"]
    assert plugins["broken"]["status"] == "failed"
    assert "libfoo.so missing" in plugins["broken"]["error"]
    assert "failed to load" in result.stderr  # the warning reaches the user too

    info = subprocess.run(
        [sys.executable, "-m", "tlcore.cli", "info", "--json", str(cube)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    scene = json.loads(info.stdout)["scenes"][0]
    assert json.loads(info.stdout)["reader"] == "rawcube"
    assert scene["shape"] == [2, 1, 1, 8, 8] and scene["interval"] == 10.0
