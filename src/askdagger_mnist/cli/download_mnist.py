"""CLI: make sure MNIST is present and valid under a root folder (the download_mnist rule)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.mnist import DEFAULT_MIRRORS, ensure_mnist, raw_folder
from ..errors import UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder to hold MNIST/raw/*.gz")
    parser.add_argument(
        "--mirror", action="append", dest="mirrors", metavar="URL",
        help="base URL of a mirror (repeatable; default: torchvision's mirrors)",
    )
    args = parser.parse_args(argv)
    try:
        got = ensure_mnist(args.root, args.mirrors or DEFAULT_MIRRORS)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    where = raw_folder(args.root)
    if got:
        print(f"downloaded and verified {', '.join(got)} into {where}", file=sys.stderr)
    else:
        print(f"MNIST already present and verified in {where}; nothing downloaded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
