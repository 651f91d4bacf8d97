"""The tlcore hooks of the bioio bridge.

This module is what the entry point loads, so it imports only tlcore: bioio (about 3 s to
import, plus its plugin scan) loads on the first call that needs it. ``reader_info`` and the
refusals of files no installed bioio plugin declares read entry-point metadata only.

The bridge has the lowest priority and claims every name (``"*"``): the registry asks readers in
rank order and stops at the first yes, so a file a native tlcore reader opens never reaches it.
"""

from __future__ import annotations

from tlcore import ReaderHooks, ReaderInfo
from tlcore_bioio import discovery

NAME = "bioio"

hooks = ReaderHooks(
    ReaderInfo(
        name=NAME,
        extensions=("*",),
        priority=-100,
        # Which bioio readers are installed, from their entry-point metadata (no bioio import).
        description=discovery.describe(),
        # bioio readers differ in what they read remotely (bioio-nd2 refuses fsspec sources):
        # the registry hands the bridge a local copy of a remote file.
        remote=False,
    ),
    "tlcore_bioio.image",
)
