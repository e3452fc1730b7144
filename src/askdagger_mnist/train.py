"""Old entry point, kept so that `python -m askdagger_mnist.train` keeps working: it runs
`python -m askdagger_mnist.cli.train`."""

from .cli.train import exit_now, main

if __name__ == "__main__":
    exit_now(main())
