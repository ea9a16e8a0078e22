"""Entry point of ``python -m processing`` (see processing/cli.py)."""

import sys

from processing.cli import main

if __name__ == "__main__":
    sys.exit(main())
