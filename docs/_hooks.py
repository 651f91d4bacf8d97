"""MkDocs hooks for the tlcore site (mkdocs.yml names this file; it is not a page).

Docstrings in tlcore use reST roles (``:class:`tlcore.LoadLazyd` ``); mkdocstrings renders
them as Markdown, where the role name would show as text before the code. Drop it.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
