"""``python -m taskcodec``: the ``taskcodec`` command line."""

import sys

from taskcodec.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
