"""The prediction tests' fixed-weight nets (``nets.py``) are importable as ``nets``."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
