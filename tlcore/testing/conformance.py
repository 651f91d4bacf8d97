"""The conformance suite every tlcore reader plugin runs: one subclass is the whole test.

    # plugins/my-format/tests/test_conformance.py
    import pytest
    from tlcore.testing import ReaderConformance, Expected

    class TestMyFormat(ReaderConformance):
        reader_name = "my-format"

        @pytest.fixture(params=["a.myf", "b.myf"])
        def expected(self, request):
            return Expected(path=DATA / request.param, shape=(3, 2, 5, 170, 240),
                            scenes=["Image:0"], n_levels=1, interval=60.05,
                            reference=lambda: read_with_the_native_library(...))

        def make_garbage(self, tmp_path):   # optional: an unreadable input with your extension
            ...

        def write_sample(self, directory, pixels):   # optional: write TCZYX pixels as a file
            ...

Every check belongs to a rule of :data:`tlcore.testing.rules.RULES`; a failure message starts
with ``[tlcore rule '<name>']``, says what the rule asks and what the kit saw. The list, and
what a plugin author can tune, is in ``docs/plugin-authors.md``.
"""

from __future__ import annotations

from tlcore.testing.expected import Expected
from tlcore.testing.rules_discovery import DiscoveryRules
from tlcore.testing.rules_image import ImageRules
from tlcore.testing.rules_metadata import MetadataRules
from tlcore.testing.rules_pixels import PixelRules

__all__ = ["Expected", "ReaderConformance"]


class ReaderConformance(DiscoveryRules, MetadataRules, ImageRules, PixelRules):
    """Base class of a plugin's conformance tests. Subclasses set :attr:`reader_name` and
    provide an ``expected`` fixture (usually parametrized over sample files).

    The checks come in rule families, one module each (:mod:`tlcore.testing.rules_discovery`,
    :mod:`~tlcore.testing.rules_metadata`, :mod:`~tlcore.testing.rules_image`,
    :mod:`~tlcore.testing.rules_pixels`); the settings a plugin author tunes and the hooks to
    override are on :class:`tlcore.testing.kitbase.KitBase`."""
