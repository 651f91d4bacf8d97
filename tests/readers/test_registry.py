from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import tlcore
from tlcore import NoReaderError, ReaderError, Registry, Source
from tlcore.readers.registry import DISABLE_ENV, ORDER_ENV

from ..support.readers import Broken, FakeFormat


@pytest.fixture
def reg() -> Registry:
    return Registry(entry_points=False)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "cells.fake.dat"
    path.write_bytes(b"FAKE" + b"\0" * 100)
    return path


def test_priority_then_longest_extension_then_name(reg: Registry, sample: Path) -> None:
    reg.register(FakeFormat("low", (".dat",), priority=0))
    reg.register(FakeFormat("high", (".dat",), priority=5))
    assert reg.select(Source.from_any(sample)) == "high"

    reg2 = Registry(entry_points=False)
    reg2.register(FakeFormat("short", (".dat",)))
    reg2.register(FakeFormat("long", (".fake.dat",)))
    assert reg2.select(Source.from_any(sample)) == "long"

    reg3 = Registry(entry_points=False)
    reg3.register(FakeFormat("beta", (".dat",)))
    reg3.register(FakeFormat("alpha", (".dat",)))
    assert reg3.select(Source.from_any(sample)) == "alpha"


def test_user_order_beats_priority(
    reg: Registry, sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg.register(FakeFormat("low", (".dat",), priority=0))
    reg.register(FakeFormat("high", (".dat",), priority=5))
    assert reg.select(Source.from_any(sample)) == "high"
    monkeypatch.setenv(ORDER_ENV, "low")
    reg.set_order(None)  # clears the sticky choice; the environment decides again
    assert reg.select(Source.from_any(sample)) == "low"
    reg.set_order(["high"])
    assert reg.select(Source.from_any(sample)) == "high"


def test_explicit_reader_wins_and_unknown_reader_lists_installed(
    reg: Registry, sample: Path
) -> None:
    reg.register(FakeFormat("high", (".dat",), priority=5))
    reg.register(FakeFormat("other", (".xyz",)))
    assert reg.select(Source.from_any(sample), reader="other") == "other"
    with pytest.raises(NoReaderError) as info:
        reg.select(Source.from_any(sample), reader="nd2")
    message = str(info.value)
    assert "no reader named 'nd2'" in message and "high (.dat)" in message
    assert "pip install tlcore-nd2" in message


def test_refusals_and_hints_in_the_error(reg: Registry, tmp_path: Path) -> None:
    path = tmp_path / "plate.nd2"
    path.write_bytes(b"garbage")
    reg.register(FakeFormat("picky", (".nd2",), magic=b"ND2!"))
    with pytest.raises(NoReaderError) as info:
        tlcore.open_lazy(path, registry=reg)
    message = str(info.value)
    assert str(path) in message
    assert "installed readers:" in message and "picky (.nd2) [loaded]" in message
    assert "readers matching the extension: picky" in message
    assert "picky: no b'ND2!' header" in message
    # picky is not the "nd2" plugin tlcore knows, so the hint names the real one
    assert "pip install tlcore-nd2" in message


def test_unclaimed_extension_gets_a_hint(reg: Registry, tmp_path: Path) -> None:
    path = tmp_path / "scan.czi"
    path.write_bytes(b"x")
    with pytest.raises(NoReaderError) as info:
        tlcore.open_lazy(path, registry=reg)
    assert "no installed reader claims the extension of 'scan.czi'" in str(info.value)
    assert "pip install tlcore-czi" in str(info.value)


def test_missing_local_path_is_file_not_found(reg: Registry, tmp_path: Path) -> None:
    reg.register(FakeFormat("any", (".dat",)))
    with pytest.raises(FileNotFoundError) as info:
        tlcore.open_lazy(tmp_path / "nope.dat", registry=reg)
    assert "nope.dat" in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"nope\.dat"):  # an explicit reader too
        tlcore.open_lazy(tmp_path / "nope.dat", reader="any", registry=reg)


def test_content_sniff_when_no_extension_matches(reg: Registry, tmp_path: Path) -> None:
    odd = tmp_path / "renamed.bin"
    odd.write_bytes(b"FAKE....")
    sniffer = FakeFormat("sniffer", (".dat",), magic=b"FAKE")
    silent = FakeFormat("silent", (".other",))  # no opinion: must not win a sniff
    reg.register(sniffer)
    reg.register(silent)
    assert reg.select(Source.from_any(odd)) == "sniffer"


def test_choice_is_sticky_per_source(reg: Registry, sample: Path) -> None:
    fmt = FakeFormat("only", (".dat",))
    reg.register(fmt)
    for _ in range(3):
        tlcore.open_lazy(sample, registry=reg)
    assert fmt.calls.count("can_open") == 1


def test_plugin_failure_is_wrapped_with_file_and_reader(reg: Registry, sample: Path) -> None:
    reg.register(Broken("broken", (".dat",)))
    with pytest.raises(ReaderError) as info:
        tlcore.open_lazy(sample, registry=reg)
    message = str(info.value)
    assert str(sample) in message and "'broken'" in message and "native library exploded" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_can_open_that_raises_is_a_refusal_not_a_crash(reg: Registry, sample: Path) -> None:
    class Raising(FakeFormat):
        @tlcore.hookimpl
        def can_open(self, source: Source) -> bool:
            raise OSError("permission denied on header")

    reg.register(Raising("raising", (".dat",)))
    reg.register(FakeFormat("fallback", (".dat",), priority=-1))
    assert reg.select(Source.from_any(sample)) == "fallback"


def test_register_rejects_duplicates_and_plugins_without_open_lazy(reg: Registry) -> None:
    reg.register(FakeFormat("dup", (".dat",)))
    with pytest.raises(ValueError, match="already registered"):
        reg.register(FakeFormat("dup", (".dat",)))

    class NoOpen:
        @tlcore.hookimpl
        def reader_info(self) -> tlcore.ReaderInfo:
            return tlcore.ReaderInfo("noopen", (".dat",))

    with pytest.raises(TypeError, match="open_lazy"):
        reg.register(NoOpen())
    assert "noopen" not in {r.name for r in reg.records()}


def test_scene_by_index_id_and_errors(reg: Registry, sample: Path) -> None:
    reg.register(FakeFormat("only", (".dat",)))
    assert tlcore.list_scenes(sample, registry=reg) == ["first", "second"]
    assert tlcore.open_lazy(sample, scene="second", registry=reg).scene_index == 1
    assert tlcore.open_lazy(sample, scene=-1, registry=reg).scene == "second"
    assert tlcore.open_lazy(sample, scene="1", registry=reg).scene == "second"
    with pytest.raises(tlcore.SceneNotFoundError, match=r"has no scene 'third'.*'first', 'second'"):
        tlcore.open_lazy(sample, scene="third", registry=reg)
    with pytest.raises(tlcore.SceneNotFoundError, match="indices 0-1"):
        tlcore.open_lazy(sample, scene=2, registry=reg)
    with pytest.raises(tlcore.LevelNotFoundError, match="1 resolution level"):
        tlcore.open_lazy(sample, level=1, registry=reg)


def test_disable_by_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DISABLE_ENV, "ome-zarr")
    reg = Registry()
    record = {r.name: r for r in reg.records()}["ome-zarr"]
    assert record.status == "disabled"
    with pytest.raises(NoReaderError, match="'ome-zarr' is disabled"):
        reg.select(Source.from_any(tmp_path), reader="ome-zarr")


def test_default_registry_finds_ome_zarr() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        names = {r.name: r for r in tlcore.get_registry().records()}
    assert names["ome-zarr"].status == "loaded"
    assert names["ome-zarr"].distribution == "tlcore-ome-zarr"
    assert ".ome.zarr" in names["ome-zarr"].extensions


def test_a_catch_all_is_not_asked_about_a_file_a_native_reader_refused(tmp_path: Path) -> None:
    """The reader that claims an extension is the authority on it: a catch-all ("*") that
    would read anything is asked only about names no reader claims (or by name)."""
    from tlcore import ReaderInfo, hookimpl

    class CatchAll:
        @hookimpl
        def reader_info(self) -> ReaderInfo:
            return ReaderInfo("catch-all", ("*",), priority=-100)

        @hookimpl
        def can_open(self, source: Source) -> bool:
            return True

        @hookimpl
        def open_lazy(self, source: Source, scene: int, level: int) -> None:
            return None

    registry = Registry(entry_points=False)
    registry.register(FakeFormat("fake", (".fake",), magic=b"FAKE"))
    registry.register(CatchAll())
    refused = tmp_path / "damaged.fake"
    refused.write_bytes(b"")
    with pytest.raises(NoReaderError, match="fake"):
        registry.select(Source.from_any(refused))
    assert registry.select(Source.from_any(refused), reader="catch-all") == "catch-all"
    other = tmp_path / "movie.xyz"
    other.write_bytes(b"")
    assert registry.select(Source.from_any(other)) == "catch-all"


# -- a remote file for a reader of local files only --------------------------------------------
def test_a_remote_file_is_chosen_by_extension_without_fetching_it(
    s3_server: dict[str, Any], s3_new_bucket: str, testdata: Path, tmp_path: Path
) -> None:
    """A remote .nd2 (read from a local copy) is chosen without a request; the copy is fetched
    by the first hook that reads it, and a file the reader refuses raises the same error, with
    the same reader and reason, as the same bytes in a local file."""
    pytest.importorskip("tlcore_nd2", reason="the tlcore-nd2 plugin is not installed")
    import s3fs

    from tlcore.io.relay import Relay

    fs = s3fs.S3FileSystem(**s3_server)
    fs.put_file(str(testdata / "nd2" / "example-timelapse.nd2"), f"{s3_new_bucket}/movie.nd2")
    junk = tmp_path / "local" / "broken.nd2"
    junk.parent.mkdir()
    junk.write_bytes(b"not an nd2 file at all" * 100)
    fs.put_file(str(junk), f"{s3_new_bucket}/broken.nd2")
    relay = Relay(str(s3_server["endpoint_url"]))
    try:
        options = {**relay.options(s3_server), "tlcore_cache_dir": str(tmp_path / "cache")}
        url = f"s3://{s3_new_bucket}/movie.nd2"
        assert tlcore.get_registry().select(Source.from_any(url, options)) == "nd2"
        assert relay.requests() == {}  # chosen by its extension: nothing fetched, not even sized
        assert tlcore.open_lazy(url, storage_options=options).reader == "nd2"
        assert relay.requests().get("GET", 0) >= 1  # fetched once the reader needed it

        with pytest.raises(NoReaderError) as remote_error:
            tlcore.open_lazy(f"s3://{s3_new_bucket}/broken.nd2", storage_options=options)
    finally:
        relay.stop()
    with pytest.raises(NoReaderError) as local_error:
        tlcore.open_lazy(junk)

    def refusals(error: pytest.ExceptionInfo[NoReaderError], path: str) -> list[str]:
        text = str(error.value).replace(path, "<file>")
        return text.split("why each reader refused:\n", 1)[1].splitlines()[:1]

    copy = next((tmp_path / "cache").rglob("broken.nd2"))
    assert refusals(remote_error, str(copy))[0].startswith("  nd2: ")
    assert refusals(remote_error, str(copy)) == refusals(local_error, str(junk))
