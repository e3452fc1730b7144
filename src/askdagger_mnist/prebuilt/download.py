"""Robust file download with ``requests``.

``download(source, dest, sha256=...)`` streams into ``<dest>.part``, retries connection errors
and 5xx answers with exponential backoff (a bounded number of attempts), resumes a dropped
transfer with an HTTP Range request (and starts afresh when the server ignores Range), checks
the sha256, and only then renames the file into place. A final failure removes the ``.part``
and raises a UserError that names the URL, the attempts and the last error.

A source is an http(s) URL, ``gdrive:<file id>`` or ``file:///path`` (an archive fetched by
hand: copied, then checked like a download). Everything specific to Google Drive (its
download endpoint and the confirmation page it shows for large files) lives in the
``gdrive_*`` functions at the end of this module.
"""

from __future__ import annotations

import hashlib
import html.parser
import logging
import os
import re
import shutil
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from .errors import UserError

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
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


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
        file_id = source[len("gdrive:") :].strip()
        if not re.fullmatch(r"[A-Za-z0-9_-]{10,}", file_id):
            raise UserError(f"{source!r} is not a valid gdrive:<file id> source: check the url.")

        def on_html(page_url: str, page: bytes) -> str:
            url = gdrive_confirmation_url(page_url, page)
            if url is None:
                raise UserError(
                    f"Google Drive answered {source} with a page that has no download form (the "
                    "file may be private, removed or over its download quota): open "
                    f"https://drive.google.com/file/d/{file_id}/view in a browser, or try later."
                )
            return url

        return gdrive_download_url(file_id), on_html
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


# --- Google Drive -------------------------------------------------------------------------
# Drive serves small files directly from its download endpoint. For large files (which it
# cannot virus-scan) it answers with an HTML page holding a form "download anyway"; the form's
# action and hidden inputs (id, export, confirm, uuid) give the URL of the file itself. Older
# pages instead carried a link with a ``confirm=`` token. The base URL can be overridden with
# the environment variable ASKDAGGER_GDRIVE_BASE (the tests point it to a local server).

GDRIVE_BASE = "https://drive.usercontent.google.com/download"


def gdrive_download_url(file_id: str) -> str:
    base = os.environ.get("ASKDAGGER_GDRIVE_BASE", GDRIVE_BASE)
    return f"{base}?{urllib.parse.urlencode({'id': file_id, 'export': 'download'})}"


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[str] = []
        self._form: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = {"id": a.get("id", ""), "action": a.get("action", ""), "inputs": {}}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            if a.get("type", "text").lower() == "hidden":
                self._form["inputs"][a["name"]] = a.get("value", "")
        elif tag == "a" and "confirm=" in a.get("href", ""):
            self.links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


def gdrive_confirmation_url(page_url: str, page: bytes) -> str | None:
    """The URL behind Drive's "download anyway" page, or None if ``page`` is not one."""
    parser = _FormParser()
    parser.feed(page.decode("utf-8", errors="replace"))
    candidates = []
    for form in parser.forms:
        if "confirm" in form["inputs"] or form["id"] == "download-form":
            query = urllib.parse.urlencode(form["inputs"])
            action = urllib.parse.urljoin(page_url, form["action"] or page_url)
            candidates.append(f"{action}{'&' if '?' in action else '?'}{query}")
    candidates += [urllib.parse.urljoin(page_url, href) for href in parser.links]
    for url in candidates:
        if urllib.parse.urlsplit(url).scheme in ("http", "https"):
            return url
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m askdagger_mnist.download SOURCE DEST [--sha256 HEX]`` (a small helper)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("source")
    ap.add_argument("dest", type=Path)
    ap.add_argument("--sha256")
    ap.add_argument("--attempts", type=int, default=Options.attempts)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        got = download(args.source, args.dest, args.sha256, options=Options(attempts=args.attempts))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info(f"{args.dest}: sha256 {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
