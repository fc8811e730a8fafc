"""``python -m skconcepts``: the ``skconcepts`` command line."""

import sys

from skconcepts.cli import main

if __name__ == "__main__":
    sys.exit(main())
