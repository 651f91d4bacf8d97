"""pytest plugin (entry point ``pytest11``): registers :mod:`tlcore.testing` for assertion
rewriting before any test module imports it, as ``zarr.testing`` does. Imports nothing else."""

import pytest

pytest.register_assert_rewrite("tlcore.testing")
