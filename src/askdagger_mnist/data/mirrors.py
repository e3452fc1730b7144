"""Fetching one MNIST archive from mirrors into the user's raw folder (data.mnist calls it):
streamed into a temporary name beside it, MD5-checked, renamed into place; one process at a
time per folder (``one_fetcher``). Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

TIMEOUT_S = 60  # a mirror silent this long is given up (the next one is tried)


class NotFetched(Exception):
    """No mirror delivered the file with the right MD5 (message: the last reason)."""


class CannotWrite(NotFetched):
    """The raw folder cannot be created or written (a read-only root)."""


def _reason(exc: BaseException) -> str:
    """One line saying why a fetch failed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
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
    """Fetch ``name`` into ``raw`` from the first mirror serving it with the right MD5. Each
    attempt writes a temporary name in ``raw`` (for an atomic rename), removed whatever happens
    unless the verified file was renamed into place. Returns the URL."""
    reason = "no mirror tried"
    for mirror in mirrors:
        url = mirror + name
        tmp = raw / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"
        try:
            raw.mkdir(parents=True, exist_ok=True)
            # 0o666 & ~umask, as any new file: a shared root stays readable by the others.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise CannotWrite(exc.strerror or str(exc)) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = _copy_url(url, out)
                out.flush()
                os.fsync(out.fileno())
            if digest != md5:
                reason = f"{url}: wrong MD5 ({size} bytes that are not {name})"
                continue
            os.replace(tmp, raw / name)
            return url
        except Exception as exc:  # any failure of this mirror: try the next one
            reason = f"{url}: {_reason(exc)}"
        finally:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass  # renamed into place (or never there)
    raise NotFetched(reason)


def _copy_url(url: str, out) -> tuple[str, int]:
    """Stream ``url`` into ``out``; returns (MD5 hex digest, size). Raises on a short read."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": "askdagger-mnist"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        announced = response.headers.get("Content-Length")
        while chunk := response.read(1 << 16):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if announced is not None and announced.isdigit() and size != int(announced):
        raise ConnectionError(f"the connection closed after {size} of {announced} bytes")
    return digest.hexdigest(), size
