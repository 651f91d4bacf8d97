"""pytest plugin (entry point ``pytest11``): registers the kit's modules for assertion rewriting
before any test module imports them, as ``zarr.testing`` does. Importing the package is cheap:
its names load on first use."""

import tlcore.testing  # noqa: F401  (registers the rewriting)
