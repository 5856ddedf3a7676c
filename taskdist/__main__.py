"""``python -m taskdist``: see :mod:`taskdist.cli`."""

import sys

from taskdist.cli import main

if __name__ == "__main__":
    sys.exit(main())
