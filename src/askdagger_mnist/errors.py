"""One exception type for problems a user can fix; CLIs print its message and exit 1. And the
one way a line for the user reaches a job's log (stderr) as it happens."""

import sys


class UserError(Exception):
    """An error whose message is one sentence naming the file or key and what to do."""


def stderr_line(line: str) -> None:
    """Print ``line`` to stderr at once (flushed: a log read while the job runs shows it)."""
    print(line, file=sys.stderr, flush=True)
