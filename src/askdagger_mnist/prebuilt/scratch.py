"""Scratch folders of an import: nothing half-done is ever left beside the output.

An import works in ``.{out.name}.XXXXXXXX.scratch`` beside its output ``out`` (the same file
system, so that the result is renamed into place in one step, ``data.atomic.replace_dir``, the
old output moved into the scratch folder) and removes it on every exit
path, KeyboardInterrupt and SIGTERM included (the CLI turns SIGTERM into an exception). A
process killed outright (SIGKILL, the out-of-memory killer) cannot clean up; its scratch folder
is then removed by the next import of the same output. Each scratch folder holds ``.lock``,
locked (flock) for as long as its import runs: the lock dies with the process, so a folder
whose lock can be taken is stale, and one whose lock is held belongs to a running import and is
left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no locks; only scratch folders older than a day count as stale
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SUFFIX = ".scratch"
LOCK = ".lock"
_UNLOCKED_GRACE_S = 60.0  # a folder not locked yet may be one being created right now
_NO_LOCKS_STALE_S = 86400.0


def scratch_name_pattern(out: Path) -> re.Pattern:
    """The names ``scratch_dir(out)`` gives its folders (tempfile's 8 random characters)."""
    return re.compile(re.escape(f".{Path(out).name}.") + r"[a-z0-9_]{8}" + re.escape(SUFFIX))


def _is_stale(folder: Path) -> bool:
    if fcntl is None:
        return time.time() - folder.stat().st_mtime > _NO_LOCKS_STALE_S
    try:
        fd = os.open(folder / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime > _UNLOCKED_GRACE_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: an import is running
    finally:
        os.close(fd)  # closing releases the lock we may have taken; nobody else wants it
    return True


def remove_stale(out: Path) -> list[Path]:
    """Remove the scratch folders of earlier imports of ``out`` that were killed; returns them."""
    out = Path(out)
    pattern = scratch_name_pattern(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    for entry in os.scandir(out.parent):
        folder = Path(entry.path)
        try:
            if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False) and _is_stale(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        except OSError:
            continue  # vanished meanwhile: another import cleaned it
    for folder in removed:
        log.info(f"removed {folder}, left behind by an import that was killed")
    return removed


@contextlib.contextmanager
def scratch_dir(out: Path) -> Iterator[Path]:
    """A fresh, locked scratch folder beside ``out``; removed on every exit path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=SUFFIX, dir=out.parent))
    fd = -1
    try:
        fd = os.open(work / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield work
    finally:
        try:
            shutil.rmtree(work, ignore_errors=True)
        finally:  # if even that is interrupted, the next import removes the rest
            if fd >= 0:
                os.close(fd)

