"""One attempt of a download (data/download.py repeats them): a GET of the whole file, or of
its rest with an HTTP Range request, streamed into the partial file, with progress lines; what
an answer means (a body to keep, a failure worth another attempt, one that is final).

Every download is bounded (``Options.max_bytes``; settings.MAX_DOWNLOAD_MIB): a file that
announces a larger size is refused before its body is read, and a body that grows past the
limit without announcing its size (or past a Range answer's) is stopped there. Both are final.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from ..errors import UserError
from ..settings import MAX_DOWNLOAD_MIB

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


class Retry(Exception):
    """A failure worth another attempt (connection error, 5xx, short body)."""


class Restart(Exception):
    """The partial file cannot be resumed: start again from byte 0 at once."""


@dataclass
class Options:
    attempts: int = 6
    backoff_s: float = 2.0  # wait backoff_s * 2**(attempt - 1) before the next attempt...
    max_backoff_s: float = 60.0  # ...but never longer than this
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0
    headers: dict = field(default_factory=dict)
    max_bytes: int = MAX_DOWNLOAD_MIB << 20  # the most a download may bring


def fmt_bytes(n: float) -> str:
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
        of = f" of {fmt_bytes(self.total)}" if self.total else ""
        return f"{self.name}: {fmt_bytes(done)}{of}{pct} at {fmt_bytes(rate)}/s"

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            log.info(self.line(done))


# What to do about a file over the limit (the sentences below end with it).
_RAISE_LIMIT = ("check the url, or, if the file really is that large, raise the limit (config key "
                "max_download_mib, --max-mib of cli.fetch_results).")


def too_large(url: str, size: int, limit: int, verb: str = "announces") -> DownloadFailed:
    """A file whose announced (or known: ``verb`` "is") ``size`` exceeds the download limit."""
    return DownloadFailed(url, f"{fmt_bytes(size)}, over the {fmt_bytes(limit)} download limit",
                          f"{url} {verb} {fmt_bytes(size)}, more than the download limit of "
                          f"{fmt_bytes(limit)}, so nothing was downloaded: {_RAISE_LIMIT}")


def _stopped_at_limit(url: str, limit: int) -> DownloadFailed:
    return DownloadFailed(url, f"more than the {fmt_bytes(limit)} download limit",
                          f"{url} sent more than the download limit of {fmt_bytes(limit)} without "
                          f"announcing that size, so the download was stopped there and nothing "
                          f"was kept: {_RAISE_LIMIT}")


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
        raise Retry(_connection_failure(exc)) from None


def _body_range(resp: requests.Response, url: str, have: int, validators: dict) -> tuple[int, int | None]:
    """(the byte the body starts at, the file's size if announced) of an answer; raises
    Retry, Restart or DownloadFailed for answers that deliver no part of the file."""
    status = resp.status_code
    if status == 416 and have:
        raise Restart("the server refused to resume (416)")
    if status >= 500 or status == 429:
        raise Retry(f"HTTP {status} {resp.reason}")
    if status >= 400:
        raise DownloadFailed(url, f"HTTP {status} {resp.reason}", f"{url} answered HTTP {status} "
                             f"{resp.reason}: check the URL (and that the file is public), then run again.")
    if status == 206:
        m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.headers.get("Content-Range", ""))
        if m is None or int(m.group(1)) != have:
            raise Restart(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
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
        raise Retry(f"connection lost while reading a page ({type(exc).__name__})") from None
    return page


def _write_body(resp: requests.Response, part: Path, start: int, total: int | None, name: str,
                url: str, max_bytes: int) -> None:
    """Write the body into ``part`` from byte ``start`` on; Retry when it breaks off short,
    DownloadFailed before the file would grow past ``max_bytes``."""
    progress, done = _Progress(name, start, total), start
    try:
        with open(part, "r+b") as fh:
            fh.truncate(start)
            fh.seek(start)
            for chunk in resp.iter_content(CHUNK):
                if done + len(chunk) > max_bytes:
                    raise _stopped_at_limit(url, max_bytes)
                fh.write(chunk)
                done += len(chunk)
                progress.update(done)
    except _LOST as exc:
        raise Retry(f"connection lost after {done} bytes ({type(exc).__name__})") from None
    if total is not None and done != total:
        raise Retry(f"got {done} of {total} bytes")
    log.info(progress.line(done))


def fetch_once(session: requests.Session, url: str, part: Path, opts: Options, validators: dict,
                on_html: Callable[[str, bytes], str] | None, name: str) -> str | None:
    """One request, appending to (or rewriting) ``part``. Returns the URL behind a
    confirmation page to follow next, or None when ``part`` holds the whole body.

    Raises Retry for transient failures (the partial file is kept for a Range resume),
    Restart when the partial file must be discarded, UserError for permanent failures.
    """
    have = part.stat().st_size
    with _request(session, url, have, opts, validators) as resp:
        start, total = _body_range(resp, url, have, validators)
        if total is not None and total > opts.max_bytes:
            raise too_large(url, total, opts.max_bytes)  # before a byte of the body is read
        page = start == 0 and resp.headers.get("Content-Type", "").startswith("text/html")
        if on_html is not None and page:
            return on_html(resp.url, _read_page(resp))  # the URL behind the page, or it raises
        _write_body(resp, part, start, total, name, url, opts.max_bytes)
        return None


