"""The conformance kit catches what it promises: faults are put, one at a time, into the plugin
that ``tlcore new-plugin`` writes (a folder of ``.npy`` timepoints, memory-mapped), the plugin
is installed as a real distribution (a dist-info with its entry point on sys.path), and the
kit's check for that rule must fail with a message naming the rule. The same checks pass on
the plugin as generated."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tlcore
from tlcore.templates import PluginNames, write_plugin
from tlcore.testing import Expected, ReaderConformance

NAME = "npystack"
NAMES = PluginNames.from_name(NAME)
Patch = tuple[str, str, str]  # file under src/<package>/, old text, new text


@dataclass(frozen=True)
class Fault:
    rule: str
    check: str  # the kit's test method that must fail
    patches: tuple[Patch, ...]
    shape: tuple[int, int, int, int, int] = (8, 1, 2, 256, 256)  # 2 MiB of uint16
    storage_chunks: bool = True  # give Expected.storage_chunks (False: the kit must measure)
    reference: bool = True


OPEN_LAZY = (
    "def open_lazy(source: Source, scene: int, level: int) -> LazyImage:\n"
    "    meta = read_meta(source)\n"
)
READ_FRAME = 'frame = np.load(handle[ti], mmap_mode="r")'
CHUNKS = "return (1, shape[1], shape[2], shape[3], shape[4])"

FAULTS: dict[str, Fault] = {
    "open-reads-every-frame": Fault("metadata-only", "test_metadata_hooks_read_no_pixels", (
        ("stack.py", OPEN_LAZY,
         OPEN_LAZY + "    display_range = [float(np.load(f).max()) for f in meta.files]\n"),
    )),
    "can-open-reads-pixels": Fault("metadata-only", "test_metadata_hooks_read_no_pixels", (
        ("stack.py", "        read_meta(source)\n",
         "        for f in read_meta(source).files:\n            np.load(f).sum()\n"),
    )),
    # The same two faults on the docs' small sample (256 bytes of pixels: under any floor):
    # the kit's own large sample catches them.
    "small-sample-open-reads-every-frame": Fault(
        "metadata-only", "test_metadata_hooks_read_no_pixels_of_a_large_sample", (
            ("stack.py", OPEN_LAZY,
             OPEN_LAZY + "    display_range = [float(np.load(f).max()) for f in meta.files]\n"),
        ), shape=(2, 1, 1, 8, 8)),
    "small-sample-can-open-reads-pixels": Fault(
        "metadata-only", "test_metadata_hooks_read_no_pixels_of_a_large_sample", (
            ("stack.py", "        read_meta(source)\n",
             "        for f in read_meta(source).files:\n            np.load(f).sum()\n"),
        ), shape=(2, 1, 1, 8, 8)),
    "memory-maps-on-the-reader": Fault("pickle-is-metadata", "test_pickle_is_metadata", (
        ("stack.py", "        self.files = meta.files\n",
         "        self.files = meta.files\n"
         '        self.frames = [np.load(f, mmap_mode="r") for f in meta.files]\n'),
    )),
    "pixels-on-a-tiny-reader": Fault("pickle-is-metadata", "test_pickle_is_metadata", (
        ("stack.py", "        self.files = meta.files\n",
         "        self.files = meta.files\n"
         "        self.pixels = np.stack([np.load(f) for f in meta.files])\n"),
    ), shape=(2, 1, 1, 8, 8)),  # the docs' small example: a size limit alone cannot see it
    "writable-memory-map": Fault("read-only", "test_never_writes_the_samples", (
        ("stack.py", READ_FRAME, READ_FRAME.replace('"r"', '"r+"')),
    )),
    "touches-modification-time": Fault("read-only", "test_never_writes_the_samples", (
        ("stack.py", OPEN_LAZY, OPEN_LAZY + "    os.utime(meta.files[0])\n"),
    )),
    "bare-false-refusal": Fault("refusal-reason", "test_refuses_garbage_with_a_reason", (
        ("stack.py", "        return str(exc)\n", "        return False\n"),
    )),
    "chunks-span-timepoints": Fault("chunks", "test_chunks", (
        ("stack.py", CHUNKS, "return (min(2, shape[0]), shape[1], shape[2], shape[3], shape[4])"),
    ), storage_chunks=False),
    "whole-array-one-chunk": Fault("chunks", "test_chunks", (
        ("stack.py", CHUNKS, "return shape"),
    ), storage_chunks=False),
    "level-chunks-disagree": Fault("chunks", "test_chunks", (
        ("stack.py", "chunks=StackReader.storage_chunks(meta.shape)", "chunks=meta.shape"),
    )),
    "float64-for-uint16": Fault("dtype", "test_dtype", (
        ("stack.py", "        return out\n", "        return out.astype(np.float64)\n"),
    )),
    "unstable-identity": Fault("identity", "test_identity", (
        ("stack.py", "return (self.key,)", "return (self.key, id(self))"),
    )),
    "heavy-hook-module": Fault("light-hook-module", "test_hook_module_is_light", (
        ("reader.py", "from tlcore import ReaderHooks, ReaderInfo\n",
         "import dask.array  # noqa: F401\n\nfrom tlcore import ReaderHooks, ReaderInfo\n"),
    )),
    "every-timepoint-the-first": Fault("reference", "test_pixels_match_reference", (
        ("stack.py", READ_FRAME, READ_FRAME.replace("handle[ti]", "handle[0]")),
    )),
    "kit-sample-every-timepoint-the-first": Fault(
        "reference", "test_pixels_of_a_sample_the_kit_writes", (
            ("stack.py", READ_FRAME, READ_FRAME.replace("handle[ti]", "handle[0]")),
        ), reference=False),
    "transposed-square-image": Fault("reference", "test_pixels_match_reference", (
        ("stack.py", "out[i] = frame[c, z, y, x]", "out[i] = np.swapaxes(frame, 2, 3)[c, z, y, x]"),
    ), shape=(3, 1, 1, 64, 64)),
}  # fmt: skip


def install_plugin(root: Path, patches: tuple[Patch, ...], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Write the template plugin with ``patches`` applied and install it on sys.path exactly as
    pip would (its package plus a dist-info with the entry point). Returns its stack module."""
    plugin = write_plugin(NAME, root)
    package = plugin / "src" / NAMES.package
    for filename, old, new in patches:
        text = (package / filename).read_text()
        assert text.count(old) == 1, f"the template changed: {old!r} not found once in {filename}"
        (package / filename).write_text(text.replace(old, new))
    site = root / "site"
    info = site / f"{NAMES.package}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {NAMES.dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[tlcore.readers]\n{NAME} = {NAMES.package}.reader\n")
    monkeypatch.syspath_prepend(str(plugin / "src"))
    monkeypatch.syspath_prepend(str(site))
    _forget_plugin()
    import importlib

    return importlib.import_module(f"{NAMES.package}.stack")


def _forget_plugin() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == NAMES.package]:
        del sys.modules[name]
    tlcore.reset_registry()


class Kit(ReaderConformance):
    """The conformance subclass a plugin author writes (not collected: no Test prefix)."""

    reader_name = NAME
    stack: Any = None

    def make_garbage(self, tmp_path: Path) -> Path:
        path = tmp_path / f"garbage{NAMES.ext}"
        path.mkdir()
        (path / "t0000.npy").write_bytes(b"not a .npy file" * 8)
        return path

    def write_sample(self, directory: Path, pixels: np.ndarray) -> Path:
        return Path(self.stack.write_stack(directory / f"kit{NAMES.ext}", pixels))


@pytest.fixture
def kit_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Fault], tuple[Kit, Expected]]]:
    def make(fault: Fault) -> tuple[Kit, Expected]:
        kit = Kit()
        kit.stack = install_plugin(tmp_path / "plugin", fault.patches, monkeypatch)
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 65535, size=fault.shape, dtype="uint16")
        path = Path(kit.stack.write_stack(tmp_path / f"sample{NAMES.ext}", pixels, interval=2.0))
        # The reference reads the files written above with numpy, not through the plugin.
        want = pixels.copy()
        expected = Expected(
            path=path,
            shape=fault.shape,
            interval=2.0,
            dtype="uint16",
            storage_chunks=(1, *fault.shape[1:]) if fault.storage_chunks else None,
            reference=(lambda: want) if fault.reference else None,
        )
        return kit, expected

    yield make
    _forget_plugin()


def run_check(kit: Kit, check: str, expected: Expected, tmp_path: Path) -> None:
    """Call one of the kit's tests with the fixtures it asks for."""
    method = getattr(kit, check)
    available: dict[str, Any] = {"expected": expected, "tmp_path": tmp_path / check}
    (tmp_path / check).mkdir(parents=True)
    wanted = inspect.signature(method).parameters
    if "image" in wanted:
        available["image"] = tlcore.open_lazy(expected.path, scene=expected.scene)
    method(**{name: available[name] for name in wanted})


@pytest.mark.parametrize("fault_id", sorted(FAULTS))
def test_kit_fails_the_faulty_reader_naming_the_rule(
    fault_id: str, kit_for: Callable[[Fault], tuple[Kit, Expected]], tmp_path: Path
) -> None:
    fault = FAULTS[fault_id]
    kit, expected = kit_for(fault)
    with pytest.raises((AssertionError, pytest.fail.Exception)) as info:
        run_check(kit, fault.check, expected, tmp_path)
    message = str(info.value)
    assert f"[tlcore rule {fault.rule!r}]" in message, message
    assert "saw:" in message, message


@pytest.mark.parametrize("fault_id", sorted(FAULTS))
def test_the_same_check_passes_the_reader_as_generated(
    fault_id: str, kit_for: Callable[[Fault], tuple[Kit, Expected]], tmp_path: Path
) -> None:
    fault = FAULTS[fault_id]
    kit, expected = kit_for(Fault(fault.rule, fault.check, (), fault.shape,
                                  fault.storage_chunks, fault.reference))  # fmt: skip
    run_check(kit, fault.check, expected, tmp_path)


def test_hints_at_the_mistake(
    kit_for: Callable[[Fault], tuple[Kit, Expected]], tmp_path: Path
) -> None:
    kit, expected = kit_for(FAULTS["transposed-square-image"])
    with pytest.raises(AssertionError, match="Y and X are transposed"):
        run_check(kit, "test_pixels_match_reference", expected, tmp_path)


def test_a_missing_reference_is_reported_not_passed(
    kit_for: Callable[[Fault], tuple[Kit, Expected]], tmp_path: Path
) -> None:
    kit, expected = kit_for(FAULTS["kit-sample-every-timepoint-the-first"])
    with pytest.raises(pytest.skip.Exception, match=r"NOT CHECKED.*no Expected\.reference"):
        run_check(kit, "test_pixels_match_reference", expected, tmp_path)
    strict = type("StrictKit", (Kit,), {"require_reference": True})()
    strict.stack = kit.stack
    with pytest.raises(pytest.fail.Exception, match=r"\[tlcore rule 'reference'\] NOT CHECKED"):
        run_check(strict, "test_pixels_match_reference", expected, tmp_path / "again")


def test_lossless_casts_only() -> None:
    """ArrayReader casts _read's output only when no value can change."""
    from tlcore.lazy import ArrayReader, Region

    class Returns(ArrayReader):
        def __init__(self, returned: str) -> None:
            super().__init__((1, 1, 1, 2, 2), "uint16", (1, 1, 1, 2, 2))
            self.returned = returned

        def identity(self) -> tuple[Any, ...]:
            return ("returns", self.returned)

        def _open(self) -> None:
            return None

        def _read(self, handle: Any, region: Region) -> np.ndarray:
            return np.full((1, 1, 1, 2, 2), 7, dtype=self.returned)

    assert Returns("uint8")[...].dtype == np.uint16
    assert Returns(">u2")[...].dtype == np.uint16  # big-endian TIFF data
    for lossy in ("float64", "int32", "uint32"):
        with pytest.raises(TypeError, match=rf"Returns\(.*{lossy}.*declares uint16"):
            Returns(lossy)[...]


def test_kit_modules_are_assertion_rewritten() -> None:
    """Kit failures show the compared values: pytest rewrites the kit's asserts."""
    import tlcore.testing.conformance as conformance

    assert type(conformance.__loader__).__name__ == "AssertionRewritingHook"
