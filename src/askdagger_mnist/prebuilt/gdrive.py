"""Google Drive's ``gdrive:<file id>``, the source ``prebuilt.download`` takes besides http(s) and
file:// URLs: its download URL and the confirmation page Drive shows for large files."""

from __future__ import annotations

import html.parser
import os
import re
import urllib.parse
from typing import Callable

from ..errors import UserError

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


def gdrive_source(source: str) -> tuple[str, Callable[[str, bytes], str]]:
    """(download URL, handler of an HTML answer) for a ``gdrive:<file id>`` source."""
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
