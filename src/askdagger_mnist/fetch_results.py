"""Old entry point, kept so that `python -m askdagger_mnist.fetch_results` keeps working: it runs
`python -m askdagger_mnist.cli.fetch_results`."""

import sys

from .cli.fetch_results import main

if __name__ == "__main__":
    sys.exit(main())
