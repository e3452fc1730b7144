"""Old entry point, kept so that `python -m askdagger_mnist.aggregate` keeps working: it runs
`python -m askdagger_mnist.cli.aggregate`."""

import sys

from .cli.aggregate import main

if __name__ == "__main__":
    sys.exit(main())
