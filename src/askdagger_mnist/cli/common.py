"""What the stage commands that write files share: run one, name each file it wrote, and
turn a UserError into its one sentence on stderr (exit status 1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UserError


def run_writing(command: Callable[[argparse.Namespace], Sequence[Path]],
                args: argparse.Namespace) -> int:
    try:
        written = command(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0
