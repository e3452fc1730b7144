"""Fetching one MNIST archive from mirrors into the user's raw folder (data.mnist calls it),
with the package's one downloader (``data.download``: streamed into a temporary name beside
it, MD5-checked, renamed into place); one process at a time per folder (``one_fetcher``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from .atomic import DiskFull, NotWritable

# A mirror that does not connect, or falls silent, this long is given up (the next one is
# tried): generous, as the stdlib fetcher before it, for slow links and overloaded mirrors.
TIMEOUT_S = 60


class NotFetched(Exception):
    """No mirror delivered the file with the right MD5 (message: the last reason)."""


class CannotFetch(NotFetched):
    """No mirror can help, nor can any other file be fetched: the raw folder cannot be created
    or written (a read-only root, a full disk; ``verb`` write), or this environment cannot
    download at all (no requests; ``verb`` download). ``remedy``: what the user can do."""

    def __init__(self, reason: str, remedy: str, verb: str = "write"):
        super().__init__(reason)
        self.remedy, self.verb = remedy, verb


_ELSEWHERE = "copy them there yourself, or point mnist_root (--root) at a writable folder."


def _reason(exc: Exception) -> str:
    """A few words saying why a mirror failed: the downloader's reason, or the exception's."""
    if isinstance(exc, UserError):
        return getattr(exc, "reason", None) or str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


@contextlib.contextmanager
def one_fetcher(raw: Path):
    """Hold an exclusive lock on the raw folder (flock on the folder itself: no lock file in the
    user's root) while one archive is checked and fetched, so that workflows sharing a root
    fetch each archive once and never replace a verified file another one placed. Without a
    folder to lock (it cannot be created), ``fetch_verified`` says why."""
    try:
        raw.mkdir(parents=True, exist_ok=True)
        fd = os.open(raw, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def fetch_verified(raw: Path, name: str, md5: str, mirrors: Sequence[str]) -> str:
    """Fetch ``name`` into ``raw`` from the first mirror serving it with the right MD5, one
    attempt per mirror (the next mirror is the retry). Whatever fails, nothing but the
    verified file is left in ``raw``. Returns the URL."""
    try:
        from .download import Options, download  # requests: only when a file is fetched
    except ImportError as exc:
        if exc.name != "requests":
            raise
        raise CannotFetch("this Python environment lacks the package requests", "install it "
                          "(envs/train.yaml lists it), or copy the .gz files there yourself.",
                          verb="download") from None

    one_try = Options(attempts=1, connect_timeout_s=TIMEOUT_S, read_timeout_s=TIMEOUT_S)
    reason = "no mirror tried"
    for mirror in mirrors:
        url = mirror + name
        try:
            download(url, raw / name, md5=md5, options=one_try)
            return url
        except NotWritable as exc:  # no mirror can help
            raise CannotFetch(exc.reason, _ELSEWHERE) from exc
        except DiskFull as exc:  # no mirror can help either: not a network problem
            raise CannotFetch(exc.reason, "free space there and run again, or point mnist_root "
                              "(--root) at a folder on another disk.") from exc
        except Exception as exc:  # any failure of this mirror: try the next one
            reason = f"{url}: {_reason(exc)}"
    raise NotFetched(reason)
