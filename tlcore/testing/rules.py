"""The rules the conformance kit checks, each with a short name that every failure message
starts with, so a plugin author sees at once which rule broke and what the kit saw."""

from __future__ import annotations

RULES: dict[str, str] = {
    "discovery": "the plugin is found through its `tlcore.readers` entry point and loads",
    "selection": "tlcore chooses the plugin for its samples without reader=",
    "refusal-reason": "can_open refuses garbage with a reason string, not a bare False or None",
    "scenes": "scene ids are unique strings; scenes resolve by index and by id",
    "errors": "a bad scene or level raises tlcore's SceneNotFoundError / LevelNotFoundError",
    "metadata-only": "can_open, list_scenes, levels, time_axis and open_lazy read no pixels "
    "(bytes read stay within the metadata budget; no ArrayReader read; no pixels in the graph)",
    "read-only": "the sample files are never opened, mapped or changed for writing; no byte or "
    "modification time of them changes",
    "tczyx": "data is a 5-D TCZYX dask array of the expected shape, dtype, channels, pixel sizes",
    "time-axis": "the time axis agrees with the data and with the expected interval/timestamps",
    "levels": "level 0 is the largest and every level opens with its advertised shape",
    "chunks": "dask chunks equal Level.chunks, follow the file's storage unit and are never "
    "coarser than it (no chunk spanning timepoints, no single chunk over a multi-plane array, "
    "unless the file itself stores them that way)",
    "dtype": "the pixels read have exactly the declared dtype (no silent lossy cast)",
    "identity": "the array's identity (its dask name) is the same for two opens of the same "
    "file, and differs between scenes and levels",
    "pickle-is-metadata": "a pickled LazyImage is metadata: no pixel arrays, memory maps or raw "
    "pixel bytes, and under a size limit that does not grow with the image",
    "fresh-process": "an unpickled image reads the same pixels in another process",
    "crops": "crops agree with a full read, synchronously and with threads",
    "reference": "the pixels equal an independent reference (Expected.reference, or a sample "
    "the kit writes through write_sample)",
    "light-hook-module": "the entry point's module imports only tlcore and the standard library "
    "(no dask, numpy or native library) in a fresh interpreter",
}


def rule(name: str, detail: str) -> str:
    """The failure message for ``name``: ``[tlcore rule 'chunks'] <what it says>: <detail>``."""
    return f"[tlcore rule {name!r}] {RULES[name]}\n  saw: {detail}"
