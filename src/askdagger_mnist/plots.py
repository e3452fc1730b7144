"""Old entry point, kept so that `python -m askdagger_mnist.plots` keeps working: it runs
`python -m askdagger_mnist.cli.plots`."""

import sys

from .cli.plots import main

if __name__ == "__main__":
    sys.exit(main())
