"""``python -m tlcore.cli``: the ``tlcore`` command."""

import sys

from tlcore.cli import main

sys.exit(main())
