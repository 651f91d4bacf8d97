"""Peak memory of a DataLoader tree, eager against lazy against a no-op floor:
``python benchmarks/memory.py [--json] [--workers 4] [--crop 64,64,64] ...``.

The same as ``tlcore bench memory`` (the code is :mod:`tlcore.cli.bench.memory`, so installed
users can run it too); see that module and docs/lazy-path.md for what each row measures.
"""

from __future__ import annotations

import sys

from tlcore.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "memory", *sys.argv[1:]]))
