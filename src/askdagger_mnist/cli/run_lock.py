"""The run lock: one process at a time writes a run (``<checkpoint>.lock``, beside it), so
that a rerun cannot write the same run while an orphaned process (say, a job left behind by a
killed Snakemake) still does. Used by cli/train.py around everything it does to a run."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from ..data.atomic import reporting_no_space
from ..errors import UserError, stderr_line
from ..runner.slots import NO_LOCKS


@contextlib.contextmanager
def exclusive_run_lock(checkpoint: Path):
    """Hold ``<checkpoint>.lock`` for the whole run, so that a rerun cannot write the same run
    while an orphaned process (say, a job left behind by a killed Snakemake) still does.

    A flock belongs to the file (the inode), not to its name. So that nothing is left beside
    the run, the holder deletes the lock file, and it does so while it still holds the lock;
    a process that opened the file just before, and takes the lock once it is released, then
    holds a deleted file, which ``_take_run_lock`` notices: it takes the file now under the
    name instead, and no two processes ever hold the run. (gpu_slots.py's slot files are
    never deleted, and need no such check.)
    """
    lock_path = Path(f"{checkpoint}.lock")
    with _take_run_lock(lock_path) as fh:
        try:
            with reporting_no_space(lock_path):
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
                fh.flush()
            yield
        finally:
            lock_path.unlink(missing_ok=True)  # still held: see above


def _take_run_lock(lock_path: Path):
    """The open lock file, locked, and still the file under ``lock_path``; one sentence naming
    the holder when another process holds it. The file is closed on every other way out."""
    while True:
        with reporting_no_space(lock_path):
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"another training process ({_holder(fh)}) is still writing this run "
                    f"({lock_path} is locked): wait for it to finish or kill it, then rerun."
                ) from None
            except OSError as exc:
                if exc.errno not in NO_LOCKS:
                    raise
                # As data/atomic.py does on such a file system: go on, and say so.
                stderr_line(f"warning: {lock_path.parent} is on a file system without locks "
                            f"({exc.strerror}): this run is written without its run lock, so "
                            "make sure no other process trains it at the same time.")
                return fh
            if _still_named_by(lock_path, fh):
                return fh
        except BaseException:
            fh.close()  # the lock with it, if it was taken
            raise
        fh.close()  # its holder deleted it meanwhile: lock the file now under the name


def _holder(fh) -> str:
    """Who holds the lock, as its holder wrote it ("pid N on HOST"), or "unknown"."""
    try:
        fh.seek(0)
        return fh.read(200).strip() or "unknown"
    except (OSError, ValueError):  # unreadable, or not text (UnicodeDecodeError)
        return "unknown"


def _still_named_by(path: Path, fh) -> bool:
    """Whether ``path`` still names the open file ``fh``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fh.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)
