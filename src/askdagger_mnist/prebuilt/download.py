"""Downloading result archives: the package's one downloader (data/download.py), taking
Google Drive's ``gdrive:<file id>`` (prebuilt/gdrive.py) besides http(s) and file:// URLs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..data.download import DownloadFailed, Options, download as _download, plain_source
from .gdrive import gdrive_source

__all__ = ["DownloadFailed", "Options", "download", "resolve_source"]


def resolve_source(source: str) -> tuple[str, Callable | None]:
    """(first URL, handler for HTML answers or None) for a URL or ``gdrive:<id>`` source."""
    return gdrive_source(source) if source.startswith("gdrive:") else plain_source(source)


def download(source: str, dest: Path, sha256: str | None = None, **kwargs) -> str:
    """``data.download.download`` for a result archive's source (URL or ``gdrive:<id>``)."""
    return _download(source, dest, sha256, resolve=resolve_source, **kwargs)
