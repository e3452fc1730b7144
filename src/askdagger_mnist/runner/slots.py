"""Slots: lock files that the jobs of one machine hold while each uses its share of it (a GPU's
slot: gpu_slots.py; a CPU core: cpu_slots.py), and the way a job waits for one.

A slot is a lock file, held with an exclusive ``flock`` for the job's whole life, in a folder
that every job of the machine uses: by default ``<temp dir>/askdagger-mnist-<kind>-slots-<uid>``,
outside any working directory, so that two workflows on one machine see each other's jobs (a
folder under ``results/`` would be one per workflow, and on a shared filesystem it would mix up
the jobs of different machines). The kernel releases a flock when its process ends, however it
ends, so a killed job's slot frees itself. Slot files are never deleted (deleting a lock file
while another process opens it breaks flock).

A job chooses its slots under one more lock, ``choose.lock`` (held for milliseconds), so that
jobs starting at the same moment see each other's. While too few of the slots it may take are
free, the first job to find so holds the queue lock of those slots, ``queue-<slots>.lock`` (one
per thing waited for: the cores a job may use and how many it needs, the GPUs it sees), and
looks again every ``POLL_S`` seconds (a look costs microseconds: a flock waits for one file, not
for the first of several to be freed); every later job waiting for the same slots waits for
that lock, asleep in the kernel. So waiting costs next to no CPU, however many wait, and a job
never waits behind one that waits for other slots.

Standard library only.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import UserError, stderr_line

POLL_S = 0.2  # seconds between the first waiting job's looks for a free slot
MAX_QUEUE_NAME = 100  # characters of a queue lock's name; longer ones are hashed
Taken = TypeVar("Taken")


def default_lock_dir(kind: str) -> Path:
    """One folder per user, machine and ``kind`` of slot:
    ``<temp dir>/askdagger-mnist-<kind>-slots-<uid>``."""
    return Path(tempfile.gettempdir()) / f"askdagger-mnist-{kind}-slots-{os.getuid()}"


def prepare(folder: Path, is_default: bool, what: str, elsewhere: str) -> None:
    """Create ``folder`` (private to this user) or refuse it in one sentence. ``what`` names
    the slots in errors ("GPU slot"), ``elsewhere`` says how to name another folder."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(folder)
    except OSError as exc:
        raise UserError(f"the {what} folder {folder} cannot be used ({exc.strerror}): "
                        f"{elsewhere}.") from None
    if is_default and st.st_uid != os.getuid():
        raise UserError(f"the {what} folder {folder} belongs to another user: remove it, or "
                        f"{elsewhere}.")


def open_lock(path: Path, what: str, elsewhere: str) -> int:
    # Read-only is enough for flock (and lets a folder shared by several users work);
    # O_NOFOLLOW: a planted symbolic link is refused, never followed.
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise UserError(f"the {what} lock {path} cannot be opened ({exc.strerror}): "
                        f"{elsewhere}.") from None


def try_lock(path: Path, what: str, elsewhere: str) -> int | None:
    """An open descriptor holding the lock of ``path``, or None when another process holds it."""
    fd = open_lock(path, what, elsewhere)
    try:
        flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path, what, elsewhere)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _locked(path: Path, what: str, elsewhere: str) -> int:
    """An open descriptor holding the lock of ``path``, once no other process holds it
    (asleep meanwhile)."""
    fd = open_lock(path, what, elsewhere)
    flock(fd, fcntl.LOCK_EX, path, what, elsewhere)
    return fd


def flock(fd: int, operation: int, path: Path, what: str, elsewhere: str) -> None:
    """``fcntl.flock(fd, operation)``; on a file system without locks (some NFS and Lustre
    mounts), one sentence naming the folder, and ``fd`` closed. BlockingIOError (the lock is
    held) passes as it is."""
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno not in NO_LOCKS:
            raise
        os.close(fd)
        raise UserError(f"the {what} lock {path} cannot be taken: its file system does not "
                        f"support locks ({exc.strerror}); {elsewhere}.") from None


# flock's errors on a file system that has no locks (rather than a lock held by another process)
NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


def _choosing(folder: Path, take: Callable[[], Taken | None], what: str, elsewhere: str):
    """``take()`` under ``choose.lock``: what it took, or None."""
    choose = _locked(folder / "choose.lock", what, elsewhere)
    try:
        return take()
    finally:
        os.close(choose)


def queue_path(folder: Path, waited_for: str) -> Path:
    """The queue lock of the jobs waiting for the slots that ``waited_for`` names:
    ``queue-<waited_for>.lock``, other characters than ``A-Za-z0-9_.,-`` made ``_`` (a name
    too long for a file: its hash)."""
    name = re.sub(r"[^A-Za-z0-9_.,-]", "_", waited_for)
    if len(name) > MAX_QUEUE_NAME:
        name = hashlib.sha256(waited_for.encode()).hexdigest()[:16]
    return Path(folder) / f"queue-{name}.lock"


def wait_for_slots(folder: Path, take: Callable[[], Taken | None], waited_for: str,
                   waiting_line: str, what: str, elsewhere: str, poll_s: float = POLL_S,
                   log: Callable[[str], None] = stderr_line) -> tuple[Taken, float]:
    """(what ``take()`` took, seconds waited): ``take`` locks free slots and returns them, or
    None when too few are free (holding none then). Says ``waiting_line`` once when it must
    wait; waits as the module's docstring says, in the queue of ``waited_for`` (a name of the
    slots ``take`` may take and how many it needs)."""
    started = time.monotonic()
    taken = _choosing(folder, take, what, elsewhere)
    if taken is None:
        log(waiting_line)
        # Asleep behind the first job waiting for the same slots.
        queue = _locked(queue_path(folder, waited_for), what, elsewhere)
        try:
            while (taken := _choosing(folder, take, what, elsewhere)) is None:
                time.sleep(poll_s)
        finally:
            os.close(queue)
    return taken, round(time.monotonic() - started, 3)
