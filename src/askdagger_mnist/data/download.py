"""The package's one downloader (``requests``): the MNIST archives from their mirrors
(data/mirrors.py) and result archives (prebuilt/download.py adds Google Drive's sources).

``download(source, dest, sha256=... or md5=...)`` streams into a temporary sibling of ``dest``
(``data.atomic.atomic_file``), retries connection errors and 5xx answers with exponential
backoff (a bounded number of attempts), resumes a dropped transfer with an HTTP Range request
(and starts afresh when the server ignores Range; data/transfer.py), checks the hash, and only
then renames the file into place. Every download is bounded (``Options.max_bytes``, default
settings.MAX_DOWNLOAD_MIB; data/transfer.py): a larger file is refused, before its body is read
where its size is announced. Any failure removes the temporary file (a download killed
outright cannot: the next download of the same file removes what it left); a failed download
is ``DownloadFailed``: one sentence naming the URL and what to do, its ``reason`` the short
cause (what a list of mirrors reports for each). A full disk is ``DiskFull`` naming ``dest``.
Errors name the URL or ``dest``, never the temporary file, which is gone when they are read.

A source is an http(s) URL or ``file:///path`` (a file fetched by hand, or a mirror folder:
copied, then checked like a download); ``resolve`` may take other kinds of source.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path
from typing import Callable

import requests

from ..errors import UserError
from .atomic import atomic_file, remove_stale_temporaries
from .hashing import file_hashes
from .transfer import DownloadFailed, Options, Restart, Retry, fetch_once, fmt_bytes, too_large

__all__ = ["DownloadFailed", "Options", "download", "local_path", "plain_source"]

log = logging.getLogger(__name__)
# (source) -> (first URL, handler of an HTML answer or None): what a kind of source means.
Resolver = Callable[[str], tuple[str, Callable[[str, bytes], str] | None]]


def plain_source(source: str) -> tuple[str, None]:
    """(the URL, no HTML handler) for an http(s) or file:// URL; UserError for anything else."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file" and parsed.path:
        return source, None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"{source!r} is not an http(s) or file:// URL: check the url.")
    return source, None


def local_path(url: str) -> Path | None:
    """The file behind a ``file://`` URL (an archive fetched by hand), else None."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        raise UserError(f"{url!r} names another host: use file:///absolute/path/to/archive.zip.")
    return Path(urllib.parse.unquote(parsed.path))


def _remove_leftovers(dest: Path) -> None:
    """Remove the partial files of earlier downloads of ``dest`` that were killed outright
    (SIGKILL, the out-of-memory killer; maybe hundreds of MB): the temporaries of
    ``atomic_file`` that no live download holds, and those of earlier versions
    (``{dest}.part``; ``.{name}.<pid>-<hex>.part`` of the MNIST fetcher). Nothing else."""
    old = re.compile(re.escape(f".{dest.name}.") + r"[0-9]+-[0-9a-f]{8}\.part")
    removed = remove_stale_temporaries(dest)
    try:
        removed += [Path(e.path) for e in os.scandir(dest.parent)
                    if (e.name == f"{dest.name}.part" or old.fullmatch(e.name))
                    and e.is_file(follow_symlinks=False)]
    except OSError:
        pass  # no folder yet: nothing left there
    for path in removed:
        path.unlink(missing_ok=True)
        log.info(f"removed {path}, left by a download of {dest.name} that was killed")


def _copy_local(src: Path, part: Path, url: str, max_bytes: int) -> None:
    if not src.is_file():
        raise DownloadFailed(url, "no such file",
                             f"{src} does not exist: fix the file:// url or put the archive there.")
    if src.stat().st_size > max_bytes:
        raise too_large(str(src), src.stat().st_size, max_bytes, verb="is")
    shutil.copyfile(src, part)
    log.info(f"{src.name}: copied {fmt_bytes(part.stat().st_size)} from {src}")


def _fetch(session: requests.Session, source: str, part: Path, opts: Options, dest: Path,
           resolve: Resolver) -> None:
    """Bring the whole file behind ``source`` into ``part``: retried with backoff, resumed,
    confirmation pages followed; DownloadFailed once the attempts are spent."""
    url, on_html = resolve(source)
    local = local_path(url)
    validators: dict = {}
    last_error, attempt, hops = "no attempt was made", 0, 0
    while attempt < opts.attempts:
        attempt += 1
        try:
            if local is not None:
                return _copy_local(local, part, url, opts.max_bytes)
            next_url = fetch_once(session, url, part, opts, validators, on_html, dest.name)
        except Restart as exc:
            log.info(f"{url}: {exc}; starting again from 0")
            part.write_bytes(b"")
            validators.clear()
            last_error = str(exc)
            continue
        except Retry as exc:
            last_error = str(exc)
            if attempt < opts.attempts:
                wait = min(opts.backoff_s * 2 ** (attempt - 1), opts.max_backoff_s)
                log.warning(f"{url}: attempt {attempt} of {opts.attempts} failed ({exc}); "
                            f"retrying in {wait:.1f} s")
                time.sleep(wait)
            continue
        if next_url is None:
            return
        hops += 1
        if hops > 3:
            raise DownloadFailed(url, "confirmation pages only", f"{source} keeps answering with "
                                 f"confirmation pages: download it in a browser, put it at {dest} "
                                 "and run again.")
        log.info(f"{url}: following the download confirmation to {next_url}")
        url, attempt = next_url, attempt - 1  # a confirmation hop is not a failed attempt
        part.write_bytes(b"")
    raise DownloadFailed(url, last_error, f"could not download {url} after {attempt} attempts (last "
                         f"error: {last_error}); check the network connection and the URL, then run again.")


def _check_hash(part: Path, got: str, source: str, name: str, algorithm: str, expected: str,
                owner: str) -> None:
    if got.lower() != expected.lower():
        raise DownloadFailed(
            source, f"wrong {algorithm.upper()} ({part.stat().st_size} bytes that are not {name})",
            f"{source} downloaded with {algorithm} {got}, but {owner} expects {expected}: the "
            f"file is corrupt or has changed; check the url and {algorithm} of this file.",
        )


def _verify(verify: Callable[[Path], None], part: Path, source: str) -> None:
    """``verify(part)``; where its sentence names ``part`` (a temporary removed with it), it
    names the download instead."""
    try:
        verify(part)
    except UserError as exc:
        if str(part) not in str(exc):
            raise
        raise UserError(str(exc).replace(str(part), f"{source} (downloaded, not kept)")) from None


def download(
    source: str,
    dest: Path,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    options: Options | None = None,
    verify: Callable[[Path], None] | None = None,
    session: requests.Session | None = None,
    resolve: Resolver = plain_source,
) -> str:
    """Download ``source`` (an http(s) or ``file://`` URL, or what ``resolve`` takes) to
    ``dest``; returns the file's sha256. ``sha256`` (the config's) or ``md5`` (a checksum
    list's) must match.

    ``verify(part_path)`` may inspect the complete file before it is renamed into place (e.g.
    check that it is a zip); if it raises, the partial file is removed and the error propagates.
    ``dest`` gets the permissions of any new file (0o666 less the umask).
    """
    opts, dest = options or Options(), Path(dest)
    _remove_leftovers(dest)  # MNIST: under the raw folder's lock (data/mirrors.py)
    own_session = session is None
    session = session or requests.Session()
    try:
        with atomic_file(dest, mode=None) as part:
            _fetch(session, source, part, opts, dest, resolve)
            got = file_hashes(part, ("sha256", "md5") if md5 else ("sha256",))  # one read
            for algorithm, expected, owner in (("sha256", sha256, "the config"),
                                               ("md5", md5, "its checksum list")):
                if expected:
                    _check_hash(part, got[algorithm], source, dest.name, algorithm, expected, owner)
            if verify is not None:
                _verify(verify, part, source)
            return got["sha256"]
    finally:
        if own_session:
            session.close()

