"""CLI: make sure MNIST is present and valid under a root folder (the download_mnist rule).

Files already there are only read (MD5-checked), never deleted or rewritten; missing ones are
downloaded (http(s):// or file:// mirrors) into a temporary name, MD5-checked, then renamed into
place. With --manifest, the verified files are recorded (sizes and MD5s) in that file, written
atomically: the workflow's own output, so that no rule ever declares a file of the user's root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.mnist import ALL_FILES, TRAIN_FILES, MnistState, prepare_mnist, raw_folder, write_manifest
from ..errors import UserError
from ..settings import MNIST_MIRRORS
from .common import run_command

REQUIRE = {"all": ALL_FILES, "train": TRAIN_FILES}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m askdagger_mnist.cli.download_mnist",
                                     description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="folder to hold MNIST/raw/*.gz")
    parser.add_argument(
        "--mirror", action="append", dest="mirrors", metavar="URL",
        help="base URL of a mirror, http(s):// or file:// (repeatable; default: torchvision's mirrors)",
    )  # fmt: skip
    parser.add_argument(
        "--require", choices=sorted(REQUIRE), default="all",
        help="all: the four archives must end up valid (default); train: only the two training "
        "archives must, the test-set ones are fetched when possible (training does not read them)",
    )  # fmt: skip
    parser.add_argument(
        "--manifest", type=Path, metavar="JSON",
        help="write the verified files (sizes, MD5s) and the root to this file, atomically",
    )
    return parser


def prepare(args: argparse.Namespace) -> MnistState:
    """Check and fetch the archives, write the manifest; an unreadable file is one sentence."""
    try:
        state = prepare_mnist(args.root, args.mirrors or MNIST_MIRRORS, REQUIRE[args.require])
        if args.manifest is not None:
            write_manifest(args.manifest, state)
    except OSError as exc:  # a file of the root turning unreadable, ...
        where = exc.filename or raw_folder(args.root)
        raise UserError(f"{where}: {exc.strerror or exc}; fix it and run again.") from exc
    return state


def report(state: MnistState, manifest: Path | None) -> None:
    """What was found, fetched and written, on stderr (the rule's log)."""
    where = raw_folder(state.root)
    if state.downloaded:
        print(f"downloaded and verified {', '.join(state.downloaded)} into {where}", file=sys.stderr)
        if state.present:
            print(f"already there and verified: {', '.join(state.present)}", file=sys.stderr)
    elif state.absent:
        print(f"nothing downloaded; verified in {where}: {', '.join(state.present)}", file=sys.stderr)
    else:
        print(f"MNIST already present and verified in {where}; nothing downloaded", file=sys.stderr)
    for note in state.notes:
        print(f"note: {note}.", file=sys.stderr)
    if manifest is not None:
        print(f"wrote {manifest}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    where = raw_folder(args.root)
    return run_command(lambda: prepare(args), lambda state: report(state, args.manifest),
                       stopped=lambda by: f"interrupted; nothing partial is left in {where}: run "
                                          "again to finish.")


if __name__ == "__main__":
    sys.exit(main())
