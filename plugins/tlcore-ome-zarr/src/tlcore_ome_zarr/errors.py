"""The plugin's own error and warning: spec-invalid metadata, and metadata read with a caveat."""

from __future__ import annotations

from tlcore import ReaderError


class MetadataError(ValueError):
    """Spec-invalid OME-NGFF metadata found by the pure parsers (no file context yet).

    ``field`` is the JSON path of the offending value inside the group's attributes
    (``"multiscales[0].datasets[1].path"``, ``"ome.multiscales[0].axes"``).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class InvalidOmeZarrError(ReaderError, ValueError):
    """A store that claims to be OME-Zarr but breaks the OME-NGFF specification.

    A :class:`tlcore.ReaderError`, so tlcore passes it to the user unchanged: the message names
    the store, the group, the field and what to do.
    """


class OmeZarrWarning(UserWarning):
    """Metadata read with a caveat: a non-standard unit spelling, datasets listed out of order,
    a label left out because it is not on the image's grid..."""


def invalid(uri: str, group: str, version: str | None, error: MetadataError) -> InvalidOmeZarrError:
    """The user-facing error for ``error`` found in the group ``group`` of the store ``uri``."""
    where = f"group '{group}'" if group else "the root group"
    spec = f"OME-NGFF {version}" if version else "OME-NGFF"
    return InvalidOmeZarrError(
        f"{uri}: invalid {spec} metadata in {where}: {error}. The store breaks the OME-NGFF "
        "specification (https://ngff.openmicroscopy.org); fix the metadata or re-export the "
        "image with a conforming writer."
    )
