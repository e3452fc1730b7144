"""What every command's ``main()`` shares: one way to run its work and report how it ended.

SIGTERM (Snakemake cancelling a job, a scheduler's time limit) is raised like Ctrl-C, so every
``finally`` runs: temporary files and scratch folders are removed, partial files are never
renamed into place. A UserError is its one sentence on stderr (exit status 1); Ctrl-C and
SIGTERM are one line too (exit status 130 and 143, as a shell reports them), the command's
own where it keeps something on purpose (train: its checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..errors import UserError

T = TypeVar("T")


class Stopped(BaseException):
    """SIGTERM, raised like KeyboardInterrupt (not an Exception: nothing catches it by mistake)."""


def _stop(signum: int, _frame: Any) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Stopped(signum)


_UNTOUCHED = object()  # no handler was set (not the main thread): none to put back


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Stopped``; the previous handler is put back after."""
    try:
        previous = signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread (a test calling main): keep the default
        previous = _UNTOUCHED
    try:
        yield
    finally:
        if previous is not _UNTOUCHED:
            # None: the previous handler was not set from Python and cannot be put back; the
            # default then, never _stop left in place to raise outside any run_command.
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _error(sentence: str, status: int) -> int:
    print(f"error: {sentence}", file=sys.stderr)
    return status


def nothing_kept(by: str) -> str:
    """What a command that keeps nothing of an interrupted run says (``by``: Ctrl-C, SIGTERM)."""
    return f"stopped by {by}; nothing half-done was kept: run the command again."


def run_command(work: Callable[[], T], report: Callable[[T], None] | None = None, *,
                stopped: Callable[[str], str] = nothing_kept) -> int:
    """Run ``work()``; on success ``report`` its result and return 0. A UserError, Ctrl-C or
    SIGTERM is one ``error:`` line on stderr and the matching exit status; for the last two,
    ``stopped(by)`` is the line (by: "Ctrl-C" or "SIGTERM"), what the command leaves."""
    with sigterm_raises():
        try:
            result = work()
        except UserError as exc:
            return _error(str(exc), 1)
        except (Stopped, KeyboardInterrupt) as exc:
            by, signum = (("SIGTERM", signal.SIGTERM) if isinstance(exc, Stopped)
                          else ("Ctrl-C", signal.SIGINT))
            return _error(stopped(by), 128 + signum)
    if report is not None:
        report(result)
    return 0


def run_writing(command: Callable[[argparse.Namespace], Sequence[Path]],
                args: argparse.Namespace) -> int:
    """``run_command`` for a stage command that returns the files it wrote: names each one."""
    def name_them(written: Sequence[Path]) -> None:
        for path in written:
            print(f"wrote {path}")

    return run_command(lambda: command(args), name_them)
