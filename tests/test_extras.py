"""``pip install tlcore[nd2]`` resolves: wheels of tlcore and every plugin are built into a
folder, ``tlcore[nd2]`` is installed from it into a fresh virtual environment, and ``tlcore
plugins`` there lists nd2 and nothing it was not asked for. Slow (builds wheels, installs from
the package index): run by ``make test-slow`` and CI."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())


def test_every_format_has_an_extra_and_all_names_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for plugin in PLUGINS:
        dist = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]["name"]
        short = dist.removeprefix("tlcore-")
        assert extras[short] == [dist], f"tlcore[{short}] must install {dist}"
        assert short in extras["all"][0], f"tlcore[all] must include {short}"


@pytest.mark.slow
def test_tlcore_nd2_extra_installs_from_wheels(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(ROOT), *map(str, PLUGINS)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    built = sorted(w.name.split("-")[0] for w in wheels.glob("*.whl"))
    assert built == sorted(["tlcore", *(p.name.replace("-", "_") for p in PLUGINS)])

    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--find-links", str(wheels),
         "tlcore[nd2]"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [str(env / "bin" / "tlcore"), "plugins", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert set(plugins) == {"nd2"}, f"tlcore[nd2] installed {sorted(plugins)}"
    assert plugins["nd2"]["status"] == "loaded" and plugins["nd2"]["distribution"] == "tlcore-nd2"
    # Nothing it was not asked for: no other plugin, no training stack.
    freeze = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = {p["name"].lower() for p in json.loads(freeze)}
    assert "tlcore-nd2" in names and "nd2" in names
    assert not names & {"tlcore-czi", "tlcore-tiff", "tlcore-lif", "tlcore-ome-zarr", "torch"}
    # The bioio bridge and bioio itself come only with tlcore[bioio].
    assert not names & {"tlcore-bioio", "bioio", "bioio-base"}
