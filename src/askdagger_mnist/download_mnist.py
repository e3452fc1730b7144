"""Old entry point, kept so that `python -m askdagger_mnist.download_mnist` keeps working: it runs
`python -m askdagger_mnist.cli.download_mnist`."""

import sys

from .cli.download_mnist import main

if __name__ == "__main__":
    sys.exit(main())
