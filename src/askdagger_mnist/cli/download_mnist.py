"""CLI: make sure MNIST is present and valid under a root folder (the download_mnist rule).

Files already there are only read (MD5-checked), never deleted or rewritten; missing ones are
downloaded (http(s):// or file:// mirrors) into a temporary name, MD5-checked, then renamed into
place. With --manifest, the verified files are recorded (sizes and MD5s) in that file, written
atomically: the workflow's own output, so that no rule ever declares a file of the user's root.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..data.mnist import (
    ALL_FILES,
    DEFAULT_MIRRORS,
    TRAIN_FILES,
    prepare_mnist,
    raw_folder,
    write_manifest,
)
from ..errors import UserError

REQUIRE = {"all": ALL_FILES, "train": TRAIN_FILES}


def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary files are removed
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    where = raw_folder(args.root)
    try:
        state = prepare_mnist(args.root, args.mirrors or DEFAULT_MIRRORS, REQUIRE[args.require])
        if args.manifest is not None:
            write_manifest(args.manifest, state)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the manifest's folder, a file of the root turning unreadable, ...
        print(f"error: {exc.filename or where}: {exc.strerror or exc}; fix it and run again.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; nothing partial is left in {where}: run again to finish.", file=sys.stderr)
        return 130
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
    if args.manifest is not None:
        print(f"wrote {args.manifest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
