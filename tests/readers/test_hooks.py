"""ReaderHooks: a plugin declared in one statement, its implementation imported on first use."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tlcore
from tlcore import ReaderHooks, ReaderInfo, Registry
from tlcore.readers.registry import _plugin_object


@pytest.fixture
def impl_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real implementation module on sys.path: .cube files of a fixed 5-D array."""
    package = tmp_path / "cubeimpl"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "image.py").write_text(
        textwrap.dedent("""
        import numpy as np
        from tlcore import LazyImage, PixelSizes, TimeAxis
        from tlcore.lazy import ArrayReader, as_dask

        CALLS = []

        class Reader(ArrayReader):
            def __init__(self, data):
                super().__init__(data.shape, data.dtype, data.shape)
                self.data = data
            def identity(self):
                return ("cube",)
            def _open(self):
                return self.data
            def _read(self, handle, region):
                return handle[region]

        def can_open(source, *, flavour):
            CALLS.append(("can_open", flavour))
            return source.name.endswith(".cube")

        def open_lazy(source, scene, level, *, flavour):
            CALLS.append(("open_lazy", flavour, scene, level))
            data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 1, 1, 3, 4)
            return LazyImage(data=as_dask(Reader(data)), scene="Image:0", level=0,
                             time_axis=TimeAxis(2), pixel_sizes=PixelSizes(None, None, None),
                             channel_names=("c0",))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cubeimpl.image"
    for name in [m for m in sys.modules if m.startswith("cubeimpl")]:
        del sys.modules[name]


def test_hooks_forward_and_import_on_first_use(impl_module: str, tmp_path: Path) -> None:
    hooks = ReaderHooks(ReaderInfo("cube", (".cube",)), impl_module, flavour="plain")
    registry = Registry(entry_points=False)
    registry.register(hooks)
    assert impl_module not in sys.modules  # registering imported nothing
    path = tmp_path / "a.cube"
    path.write_bytes(b"")
    image = tlcore.open_lazy(path, registry=registry)
    np.testing.assert_array_equal(
        image.data.compute()[1, 0, 0], np.arange(12, 24, dtype=np.uint16).reshape(3, 4)
    )
    calls = sys.modules[impl_module].CALLS  # type: ignore[attr-defined]
    assert ("can_open", "plain") in calls and ("open_lazy", "plain", 0, 0) in calls
    # Hooks the module does not define answer "not implemented": tlcore's defaults apply.
    assert tlcore.list_scenes(path, registry=registry) == ["Image:0"]
    assert tlcore.time_axis(path, registry=registry).size == 2
    assert [lv.shape for lv in tlcore.levels(path, registry=registry)] == [(2, 1, 1, 3, 4)]


def test_a_module_without_open_lazy_fails_naming_it(tmp_path: Path) -> None:
    hooks = ReaderHooks(ReaderInfo("empty", (".empty",)), "json")
    registry = Registry(entry_points=False)
    registry.register(hooks)
    path = tmp_path / "a.empty"
    path.write_bytes(b"")
    with pytest.raises(tlcore.ReaderError, match="json defines no open_lazy"):
        tlcore.open_lazy(path, registry=registry)


def test_an_entry_point_module_resolves_to_its_hooks() -> None:
    import tlcore_ome_zarr.reader as module

    assert _plugin_object(module) is module.hooks
    assert _plugin_object(module.hooks) is module.hooks
    import tlcore.readers.hookspecs as plain  # a module without ``hooks`` is itself

    assert _plugin_object(plain) is plain


def test_hooks_pickle_without_their_module(impl_module: str) -> None:
    import pickle

    hooks = ReaderHooks(ReaderInfo("cube", (".cube",)), impl_module, flavour="x")
    hooks.implementation()
    clone = pickle.loads(pickle.dumps(hooks))
    assert clone._module is None and clone.bound == {"flavour": "x"}
