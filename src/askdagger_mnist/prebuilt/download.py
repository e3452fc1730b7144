"""The package's one downloader (``requests``): result archives (cli/fetch_results.py) and the
MNIST archives from their mirrors (data/mirrors.py).

``download(source, dest, sha256=... or md5=...)`` streams into a temporary sibling of ``dest``
(``data.atomic.atomic_file``), retries connection errors and 5xx answers with exponential
backoff (a bounded number of attempts), resumes a dropped transfer with an HTTP Range request
(and starts afresh when the server ignores Range), checks the hash, and only then renames the
file into place. Any failure removes the temporary file; a failed download is
``DownloadFailed``: one sentence naming the URL and what to do, its ``reason`` the short cause
(what a list of mirrors reports for each).

A source is an http(s) URL, ``gdrive:<file id>`` (``prebuilt.gdrive``) or ``file:///path``
(a file fetched by hand, or a mirror folder: copied, then checked like a download).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from ..data.atomic import atomic_file
from ..data.hashing import file_hashes
from ..errors import UserError
from .gdrive import local_path, resolve_source

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS_EVERY_S = 5.0
MAX_PAGE_BYTES = 2 << 20  # a confirmation page larger than this is not a confirmation page
USER_AGENT = "askdagger-mnist (python-requests)"
# A connection that broke off mid-body: worth another attempt, resumed where it stopped.
_LOST = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class DownloadFailed(UserError):
    """A download that did not deliver the file: ``reason`` says why in a few words."""

    def __init__(self, url: str, reason: str, message: str):
        self.url, self.reason = url, reason
        super().__init__(message)


class _Retry(Exception):
    """A failure worth another attempt (connection error, 5xx, short body)."""


class _Restart(Exception):
    """The partial file cannot be resumed: start again from byte 0 at once."""


@dataclass
class Options:
    attempts: int = 6
    backoff_s: float = 2.0  # wait backoff_s * 2**(attempt - 1) before the next attempt...
    max_backoff_s: float = 60.0  # ...but never longer than this
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0
    headers: dict = field(default_factory=dict)


def _fmt_bytes(n: float) -> str:
    power = min(3, int(abs(n)).bit_length() // 10 if abs(n) >= 1024 else 0)
    return f"{n:.0f} B" if power == 0 else f"{n / 1024 ** power:.1f} {('KiB', 'MiB', 'GiB')[power - 1]}"


class _Progress:
    """Logs 'name: got X of Y (P%) at R/s' at most every PROGRESS_EVERY_S seconds."""

    def __init__(self, name: str, start: int, total: int | None):
        self.name, self.start, self.total = name, start, total
        self.t0 = self.last = time.monotonic()

    def line(self, done: int) -> str:
        rate = (done - self.start) / max(time.monotonic() - self.t0, 1e-6)
        pct = f" ({100.0 * done / self.total:.1f}%)" if self.total else ""
        of = f" of {_fmt_bytes(self.total)}" if self.total else ""
        return f"{self.name}: {_fmt_bytes(done)}{of}{pct} at {_fmt_bytes(rate)}/s"

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            log.info(self.line(done))


def _connection_failure(exc: requests.RequestException) -> str:
    """A few words for a request that got no answer: the operating system's reason (say,
    'Connection refused') found among the exception's causes, else requests' message."""
    seen, todo = set(), [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror and not isinstance(e, requests.RequestException):
            return f"{type(exc).__name__}: {e.strerror}"
        more = [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
        todo += [m for m in more if isinstance(m, BaseException) and id(m) not in seen]
    return f"{type(exc).__name__}: {exc}"


def _request(session: requests.Session, url: str, have: int, opts: Options,
             validators: dict) -> requests.Response:
    """GET ``url`` for the bytes from ``have`` on (all of it when ``have`` is 0)."""
    # identity: byte counts and Range offsets then refer to the file itself, not a gzip stream
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **opts.headers}
    if have:
        headers["Range"] = f"bytes={have}-"
        # Resume only if the file is still the same one; otherwise the server sends it whole.
        if validators.get("etag") or validators.get("last_modified"):
            headers["If-Range"] = validators.get("etag") or validators["last_modified"]
    try:
        return session.get(url, headers=headers, stream=True,
                           timeout=(opts.connect_timeout_s, opts.read_timeout_s))
    except _LOST as exc:
        raise _Retry(_connection_failure(exc)) from None


def _body_range(resp: requests.Response, url: str, have: int, validators: dict) -> tuple[int, int | None]:
    """(the byte the body starts at, the file's size if announced) of an answer; raises
    _Retry, _Restart or DownloadFailed for answers that deliver no part of the file."""
    status = resp.status_code
    if status == 416 and have:
        raise _Restart("the server refused to resume (416)")
    if status >= 500 or status == 429:
        raise _Retry(f"HTTP {status} {resp.reason}")
    if status >= 400:
        raise DownloadFailed(url, f"HTTP {status} {resp.reason}", f"{url} answered HTTP {status} "
                             f"{resp.reason}: check the URL (and that the file is public), then run again.")
    if status == 206:
        m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != have:
            raise _Restart(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
        return have, None if m.group(3) == "*" else int(m.group(3))
    # 200: a full body, either asked for or because the server ignored Range
    if have:
        log.info(f"{url}: the server ignored the Range request; starting again from 0")
    validators.clear()
    if resp.headers.get("ETag") and not resp.headers["ETag"].startswith("W/"):
        validators["etag"] = resp.headers["ETag"]
    elif resp.headers.get("Last-Modified"):
        validators["last_modified"] = resp.headers["Last-Modified"]
    length = resp.headers.get("Content-Length", "")
    return 0, int(length) if length.isdigit() else None


def _read_page(resp: requests.Response) -> bytes:
    """At most a little more than MAX_PAGE_BYTES of an HTML answer."""
    page = b""
    try:
        for chunk in resp.iter_content(64 * 1024):
            page += chunk
            if len(page) > MAX_PAGE_BYTES:
                break
    except _LOST as exc:
        raise _Retry(f"connection lost while reading a page ({type(exc).__name__})") from None
    return page


def _write_body(resp: requests.Response, part: Path, start: int, total: int | None, name: str) -> None:
    """Write the body into ``part`` from byte ``start`` on; _Retry when it breaks off short."""
    progress, done = _Progress(name, start, total), start
    try:
        with open(part, "r+b") as fh:
            fh.truncate(start)
            fh.seek(start)
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)
                done += len(chunk)
                progress.update(done)
    except _LOST as exc:
        raise _Retry(f"connection lost after {done} bytes ({type(exc).__name__})") from None
    if total is not None and done != total:
        raise _Retry(f"got {done} of {total} bytes")
    log.info(progress.line(done))


def _fetch_once(session: requests.Session, url: str, part: Path, opts: Options, validators: dict,
                on_html: Callable[[str, bytes], str] | None, name: str) -> str | None:
    """One request, appending to (or rewriting) ``part``. Returns the URL behind a
    confirmation page to follow next, or None when ``part`` holds the whole body.

    Raises _Retry for transient failures (the partial file is kept for a Range resume),
    _Restart when the partial file must be discarded, UserError for permanent failures.
    """
    have = part.stat().st_size
    with _request(session, url, have, opts, validators) as resp:
        start, total = _body_range(resp, url, have, validators)
        page = start == 0 and resp.headers.get("Content-Type", "").startswith("text/html")
        if on_html is not None and page:
            return on_html(resp.url, _read_page(resp))  # the URL behind the page, or it raises
        _write_body(resp, part, start, total, name)
        return None


def _copy_local(src: Path, part: Path, url: str) -> None:
    if not src.is_file():
        raise DownloadFailed(url, "no such file",
                             f"{src} does not exist: fix the file:// url or put the archive there.")
    shutil.copyfile(src, part)
    log.info(f"{src.name}: copied {_fmt_bytes(part.stat().st_size)} from {src}")


def _fetch(session: requests.Session, source: str, part: Path, opts: Options, dest: Path) -> None:
    """Bring the whole file behind ``source`` into ``part``: retried with backoff, resumed,
    confirmation pages followed; DownloadFailed once the attempts are spent."""
    url, on_html = resolve_source(source)
    local = local_path(url)
    validators: dict = {}
    last_error, attempt, hops = "no attempt was made", 0, 0
    while attempt < opts.attempts:
        attempt += 1
        try:
            if local is not None:
                return _copy_local(local, part, url)
            next_url = _fetch_once(session, url, part, opts, validators, on_html, dest.name)
        except _Restart as exc:
            log.info(f"{url}: {exc}; starting again from 0")
            part.write_bytes(b"")
            validators.clear()
            last_error = str(exc)
            continue
        except _Retry as exc:
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


def download(
    source: str,
    dest: Path,
    sha256: str | None = None,
    *,
    md5: str | None = None,
    options: Options | None = None,
    verify: Callable[[Path], None] | None = None,
    session: requests.Session | None = None,
) -> str:
    """Download ``source`` (URL, ``gdrive:<id>`` or ``file://``) to ``dest``; returns the
    file's sha256. ``sha256`` (the config's) or ``md5`` (a checksum list's) must match.

    ``verify(part_path)`` may inspect the complete file before it is renamed into place (e.g.
    check that it is a zip); if it raises, the partial file is removed and the error propagates.
    ``dest`` gets the permissions of any new file (0o666 less the umask).
    """
    opts, dest = options or Options(), Path(dest)
    own_session = session is None
    session = session or requests.Session()
    try:
        with atomic_file(dest, mode=None) as part:
            _fetch(session, source, part, opts, dest)
            got = file_hashes(part, ("sha256", "md5") if md5 else ("sha256",))  # one read
            for algorithm, expected, owner in (("sha256", sha256, "the config"),
                                               ("md5", md5, "its checksum list")):
                if expected:
                    _check_hash(part, got[algorithm], source, dest.name, algorithm, expected, owner)
            if verify is not None:
                verify(part)
            return got["sha256"]
    finally:
        if own_session:
            session.close()

