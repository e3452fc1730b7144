"""Robust file download with ``requests``.

``download(source, dest, sha256=...)`` streams into ``<dest>.part``, retries connection errors
and 5xx answers with exponential backoff (a bounded number of attempts), resumes a dropped
transfer with an HTTP Range request (and starts afresh when the server ignores Range), checks
the sha256, and only then renames the file into place. A final failure removes the ``.part``
and raises a UserError that names the URL, the attempts and the last error.

A source is an http(s) URL, ``gdrive:<file id>`` (``prebuilt.gdrive``) or ``file:///path``
(an archive fetched by hand: copied, then checked like a download).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from ..errors import UserError
from .gdrive import gdrive_source

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PROGRESS_EVERY_S = 5.0
MAX_PAGE_BYTES = 2 << 20  # a confirmation page larger than this is not a confirmation page
USER_AGENT = "askdagger-mnist (python-requests)"


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _fetch_once(
    session: requests.Session,
    url: str,
    part: Path,
    opts: Options,
    validators: dict,
    on_html: Callable[[str, bytes], str] | None,
) -> str | None:
    """One request: append to / (re)write ``part``. Returns a new URL to follow, or None when done.

    Raises _Retry for transient failures (the partial file is kept for a Range resume),
    _Restart when the partial file must be discarded, UserError for permanent failures.
    """
    have = part.stat().st_size if part.exists() else 0
    # identity: byte counts and Range offsets then refer to the file itself, not a gzip stream
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **opts.headers}
    if have:
        headers["Range"] = f"bytes={have}-"
        # Resume only if the file is still the same one; otherwise the server sends it whole.
        if validators.get("etag") or validators.get("last_modified"):
            headers["If-Range"] = validators.get("etag") or validators["last_modified"]
    try:
        resp = session.get(
            url,
            headers=headers,
            stream=True,
            timeout=(opts.connect_timeout_s, opts.read_timeout_s),
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from None
    with resp:
        status = resp.status_code
        if status == 416 and have:
            raise _Restart("the server refused to resume (416)")
        if status >= 500 or status == 429:
            raise _Retry(f"HTTP {status} {resp.reason}")
        if status >= 400:
            raise UserError(
                f"{url} answered HTTP {status} {resp.reason}: check the URL (and that the file "
                "is public), then run again."
            )
        if status == 206:
            cr = _content_range_start(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != have:
                raise _Restart(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
            total = cr[1]
            mode = "ab"
            start = have
        else:  # 200: a full body, either asked for or because the server ignored Range
            if have:
                log.info(f"{url}: the server ignored the Range request; starting again from 0")
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            mode, start = "wb", 0
            validators.clear()
            if resp.headers.get("ETag") and not resp.headers["ETag"].startswith("W/"):
                validators["etag"] = resp.headers["ETag"]
            elif resp.headers.get("Last-Modified"):
                validators["last_modified"] = resp.headers["Last-Modified"]
        content_type = resp.headers.get("Content-Type", "")
        lost = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        if on_html is not None and start == 0 and content_type.startswith("text/html"):
            try:
                page = _read_bounded(resp, MAX_PAGE_BYTES)
            except lost as exc:
                raise _Retry(f"connection lost while reading a page ({type(exc).__name__})") from None
            return on_html(resp.url, page)  # the URL behind the page, or it raises
        progress = _Progress(part.name.removesuffix(".part"), start, total)
        done = start
        try:
            with open(part, mode) as fh:
                for chunk in resp.iter_content(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    progress.update(done)
        except lost as exc:
            raise _Retry(f"connection lost after {done} bytes ({type(exc).__name__})") from None
        if total is not None and done != total:
            raise _Retry(f"got {done} of {total} bytes")
        log.info(progress.line(done))
        return None


def _copy_local(src: Path, part: Path) -> None:
    if not src.is_file():
        raise UserError(f"{src} does not exist: fix the file:// url or put the archive there.")
    shutil.copyfile(src, part)
    log.info(f"{src.name}: copied {_fmt_bytes(part.stat().st_size)} from {src}")


def _read_bounded(resp: requests.Response, limit: int) -> bytes:
    buf = b""
    for chunk in resp.iter_content(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            break
    return buf


def download(
    source: str,
    dest: Path,
    sha256: str | None = None,
    *,
    options: Options | None = None,
    verify: Callable[[Path], None] | None = None,
    session: requests.Session | None = None,
) -> str:
    """Download ``source`` (URL or ``gdrive:<id>``) to ``dest``; returns the file's sha256.

    ``verify(part_path)`` may inspect the complete file before it is renamed into place (e.g.
    check that it is a zip); if it raises, the partial file is removed and the error propagates.
    """
    opts = options or Options()
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    url, on_html = resolve_source(source)
    own_session = session is None
    session = session or requests.Session()
    validators: dict = {}
    last_error = "no attempt was made"
    hops = 0
    attempt = 0
    part.unlink(missing_ok=True)  # a leftover from an earlier, different run is not trusted
    local = _local_path(url)
    try:
        while attempt < opts.attempts:
            attempt += 1
            try:
                if local is not None:
                    _copy_local(local, part)
                    next_url = None
                else:
                    next_url = _fetch_once(session, url, part, opts, validators, on_html)
            except _Restart as exc:
                log.info(f"{url}: {exc}; starting again from 0")
                part.unlink(missing_ok=True)
                validators.clear()
                last_error = str(exc)
                continue
            except _Retry as exc:
                last_error = str(exc)
                if attempt >= opts.attempts:
                    break
                wait = min(opts.backoff_s * 2 ** (attempt - 1), opts.max_backoff_s)
                log.warning(
                    f"{url}: attempt {attempt} of {opts.attempts} failed ({exc}); "
                    f"retrying in {wait:.1f} s"
                )
                time.sleep(wait)
                continue
            if next_url:
                hops += 1
                if hops > 3:
                    raise UserError(
                        f"{source} keeps answering with confirmation pages: download it in a "
                        f"browser, put it at {dest} and run again."
                    )
                log.info(f"{url}: following the download confirmation to {next_url}")
                url = next_url
                attempt -= 1  # a confirmation hop is not a failed attempt
                part.unlink(missing_ok=True)
                continue
            got = sha256_file(part)
            if sha256 and got.lower() != sha256.lower():
                raise UserError(
                    f"{source} downloaded with sha256 {got}, but the config expects {sha256}: the "
                    "file is corrupt or has changed; check the url and sha256 of this archive."
                )
            if verify is not None:
                verify(part)
            os.replace(part, dest)
            return got
        raise UserError(
            f"could not download {url} after {attempt} attempts (last error: {last_error}); "
            "check the network connection and the URL, then run again."
        )
    finally:
        part.unlink(missing_ok=True)
        if own_session:
            session.close()


def resolve_source(source: str) -> tuple[str, Callable | None]:
    """(first URL, handler for HTML answers or None) for a URL or ``gdrive:<id>`` source."""
    if source.startswith("gdrive:"):
        return gdrive_source(source)
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "file" and parsed.path:
        return source, None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"{source!r} is not an http(s) or file:// URL or gdrive:<id>: check the url.")
    return source, None


def _local_path(url: str) -> Path | None:
    """The file behind a ``file://`` URL (an archive fetched by hand), else None."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        raise UserError(f"{url!r} names another host: use file:///absolute/path/to/archive.zip.")
    return Path(urllib.parse.unquote(parsed.path))
