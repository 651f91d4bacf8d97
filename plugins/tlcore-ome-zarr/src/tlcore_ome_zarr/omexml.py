"""The OME-XML document of a bioformats2raw store (``OME/METADATA.ome.xml``), read with
ome-types: image ids, names and channel names, by series index."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class XmlImage:
    id: str
    name: str | None
    channel_names: tuple[str | None, ...]


def xml_images(text: str) -> list[XmlImage]:
    """Every ``Image`` of the document, in document order (= bioformats2raw series order).

    Raises whatever ome-types raises on a document it cannot parse (the caller decides).
    """
    from ome_types import from_xml

    # validate=False: a schema-valid document is not required to read ids and names, and
    # schema validation needs lxml and costs more than the parse.
    ome = from_xml(text, validate=False)
    return [
        XmlImage(
            id=str(image.id),
            name=image.name or None,
            channel_names=tuple(ch.name or None for ch in image.pixels.channels),
        )
        for image in ome.images
    ]
