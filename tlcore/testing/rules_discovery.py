"""Conformance rules on finding a plugin: discovery, a light hook module, selection, refusal
reasons, scenes."""

from __future__ import annotations

from pathlib import Path

import pytest

import tlcore
from tlcore.io.source import Source
from tlcore.readers.registry import get_registry
from tlcore.testing.expected import Expected
from tlcore.testing.imports import hook_module_imports
from tlcore.testing.kitbase import KitBase
from tlcore.testing.rules import rule


class DiscoveryRules(KitBase):
    """Rules ``discovery``, ``light-hook-module``, ``selection``, ``refusal-reason``, ``scenes``."""

    # -- discovery and selection -------------------------------------------------------------
    def test_discovered_through_entry_point(self) -> None:
        records = {r.name: r for r in get_registry().records()}
        assert self.reader_name in records, rule(
            "discovery", f"{self.reader_name!r} not among the plugins found: {sorted(records)}"
        )
        record = records[self.reader_name]
        assert record.status == "loaded", rule("discovery", f"status {record.status}: {record}")
        assert record.entry_point, rule(
            "discovery", "registered by hand, not through a `tlcore.readers` entry point"
        )
        assert record.info is not None and record.info.name == self.reader_name, rule(
            "discovery", f"reader_info() names {record.info and record.info.name!r}"
        )

    def test_hook_module_is_light(self) -> None:
        record = next((r for r in get_registry().records() if r.name == self.reader_name), None)
        if record is None or not record.entry_point:
            pytest.skip("not registered through an entry point (see rule 'discovery')")
        report = hook_module_imports(record.entry_point)
        assert not report.foreign, rule(
            "light-hook-module",
            f"importing {report.entry_point} and calling reader_info() loaded "
            f"{', '.join(report.foreign)} ({len(report.added)} modules in all); import them "
            "inside the hooks instead",
        )

    def test_chosen_for_its_samples(self, expected: Expected) -> None:
        chosen = get_registry().select(Source.from_any(expected.path))
        assert chosen == self.reader_name, rule("selection", f"{expected.path} went to {chosen!r}")
        image = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert image.reader == self.reader_name, rule("selection", f"opened by {image.reader!r}")

    def test_refuses_garbage_with_a_reason(self, tmp_path: Path) -> None:
        garbage = self.make_garbage(tmp_path)
        verdict = get_registry().call(self.reader_name, "can_open", Source.from_any(garbage))
        assert verdict is not True, rule("refusal-reason", f"can_open accepted {garbage}")
        assert isinstance(verdict, str) and verdict.strip(), rule(
            "refusal-reason",
            f"can_open returned {verdict!r} for {garbage}; return a string that says why "
            "(for example 'missing RAWC magic'), which tlcore shows the user",
        )
        with pytest.raises(tlcore.TlcoreError) as info:
            tlcore.open_lazy(garbage)
        assert str(garbage) in str(info.value), rule(
            "refusal-reason", f"the error does not name the file: {info.value}"
        )

    # -- scenes ------------------------------------------------------------------------------
    def test_scenes(self, expected: Expected) -> None:
        scenes = tlcore.list_scenes(expected.path)
        assert scenes and all(isinstance(s, str) for s in scenes), rule("scenes", repr(scenes))
        assert len(set(scenes)) == len(scenes), rule("scenes", f"ids not unique: {scenes}")
        if expected.scenes is not None:
            assert scenes == list(expected.scenes), rule(
                "scenes", f"{scenes} != expected {list(expected.scenes)}"
            )
        by_id = tlcore.open_lazy(expected.path, scene=scenes[expected.scene])
        by_index = tlcore.open_lazy(expected.path, scene=expected.scene)
        assert by_id.scene == by_index.scene == scenes[expected.scene], rule(
            "scenes", f"by id {by_id.scene!r}, by index {by_index.scene!r}"
        )
        assert by_id.scene_index == expected.scene, rule("scenes", f"{by_id.scene_index}")

    def test_bad_scene_and_level_raise(self, expected: Expected) -> None:
        n = len(tlcore.list_scenes(expected.path))
        with pytest.raises(tlcore.SceneNotFoundError, match="scene"):
            tlcore.open_lazy(expected.path, scene=n)
        with pytest.raises(tlcore.SceneNotFoundError):
            tlcore.open_lazy(expected.path, scene="no such scene \u2603")
        n_levels = len(tlcore.levels(expected.path, scene=expected.scene))
        with pytest.raises(tlcore.LevelNotFoundError):
            tlcore.open_lazy(expected.path, scene=expected.scene, level=n_levels)
