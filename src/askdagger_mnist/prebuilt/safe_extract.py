"""Zip extraction that never trusts the archive.

Every member is checked before a single byte is written: no absolute paths or drive letters,
no ``..`` components, only regular files and directories (no symlinks, devices, fifos), no
encrypted members, no duplicate or clashing names, no paths deeper than 32 folders, and sizes
below the limits (zip bombs: per member and for the whole archive).
Extraction then goes into a fresh temporary directory beside the destination
(``data.atomic.atomic_dir``), enforces the declared sizes while copying, and is renamed into
place only when everything succeeded.
"""

from __future__ import annotations

import lzma
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..data.atomic import atomic_dir
from ..errors import UserError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int = 1 * GiB  # one uncompressed member
    max_total_bytes: int = 32 * GiB  # all members together
    max_members: int = 200_000
    max_ratio: float = 1000.0  # uncompressed / compressed, for members and for the whole
    ratio_floor: int = 4 * MiB  # archive, once above ratio_floor
    max_depth: int = 32  # path components of a member (the deepest we write have 6)
    max_component_bytes: int = 255  # one path component (NAME_MAX of most file systems)


DEFAULT_LIMITS = Limits()
_COPY_CHUNK = 1 << 20


def _member_path(info: zipfile.ZipInfo, archive: Path, limits: Limits) -> PurePosixPath | None:
    """The member's relative path, or None for the root entry; raises for unsafe names."""
    name = info.filename
    what = f"{archive} holds a member named {name[:100]!r}{'...' if len(name) > 100 else ''}"
    if "\x00" in name:
        raise UserError(f"{what} with a NUL byte: the archive is corrupt or hostile; do not use it.")
    if "\\" in name:
        raise UserError(f"{what} with a backslash: refusing ambiguous paths; do not use the archive.")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":"):
        raise UserError(f"{what}, an absolute path: refusing to extract it; do not use the archive.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{what} with a '..' component: refusing to extract it; do not use the archive.")
    if not parts:
        return None
    if len(parts) > limits.max_depth:  # also keeps the parent checks below linear
        raise UserError(f"{what}, nested {len(parts)} folders deep, more than the limit of "
                        f"{limits.max_depth}: refusing to extract it; do not use the archive.")
    if max(len(p.encode()) for p in parts) > limits.max_component_bytes:
        raise UserError(f"{what}, with a component longer than {limits.max_component_bytes} bytes: "
                        "refusing to extract it; do not use the archive.")
    return PurePosixPath(*parts)


def _member_kind(info: zipfile.ZipInfo, archive: Path) -> str:
    """'dir' or 'file'; raises for symlinks, devices and other non-regular members."""
    mode = info.external_attr >> 16
    fmt = stat.S_IFMT(mode)
    if info.create_system == 3 and fmt not in (0, stat.S_IFREG, stat.S_IFDIR):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise UserError(
            f"{archive} member {info.filename!r} is {kind}: refusing to extract it; "
            "do not use the archive."
        )
    if info.flag_bits & 0x1:
        raise UserError(f"{archive} member {info.filename!r} is encrypted: it cannot be used.")
    if info.is_dir() or fmt == stat.S_IFDIR:
        return "dir"
    return "file"


def check_members(
    zf: zipfile.ZipFile, archive: Path, limits: Limits = DEFAULT_LIMITS
) -> list[tuple[zipfile.ZipInfo, PurePosixPath, str]]:
    """Validate all members; returns (info, relative path, kind) for each non-root member."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UserError(
            f"{archive} has {len(infos)} members, more than the limit of {limits.max_members}: "
            "refusing to extract it."
        )
    checked = []
    seen: dict[str, str] = {}
    total = packed = 0
    for info in infos:
        rel = _member_path(info, archive, limits)
        kind = _member_kind(info, archive)
        if rel is None:
            if kind == "dir":
                continue
            raise UserError(f"{archive} holds a file without a name: the archive is corrupt.")
        if kind == "file":
            if info.file_size > limits.max_member_bytes:
                raise UserError(
                    f"{archive} member {info.filename!r} unpacks to {info.file_size} bytes, above "
                    f"the limit of {limits.max_member_bytes}: refusing to extract it."
                )
            if (
                info.file_size > limits.ratio_floor
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)
            ):
                raise UserError(
                    f"{archive} member {info.filename!r} compresses {info.file_size} bytes into "
                    f"{info.compress_size} (a zip bomb?): refusing to extract it."
                )
            total += info.file_size
            packed += info.compress_size
            if total > limits.max_total_bytes:
                raise UserError(
                    f"{archive} unpacks to more than {limits.max_total_bytes} bytes: refusing to "
                    "extract it."
                )
        key = str(rel).casefold()  # also catch names that clash on case-insensitive disks
        if key in seen:
            if kind == "dir" and seen[key] == "dir":
                continue  # a directory listed twice is harmless
            raise UserError(
                f"{archive} holds {info.filename!r} more than once: refusing an ambiguous archive."
            )
        seen[key] = kind
        checked.append((info, rel, kind))
    if total > limits.ratio_floor and total > limits.max_ratio * max(packed, 1):
        raise UserError(
            f"{archive} compresses {total} bytes into {packed} (a zip bomb of many small members?): "
            "refusing to extract it."
        )
    # A file may not also be a parent directory of another member.
    for _info, rel, _kind in checked:
        for parent in list(rel.parents)[:-1]:
            if seen.get(str(parent).casefold()) == "file":
                raise UserError(
                    f"{archive} uses {str(parent)!r} both as a file and as a directory: refusing "
                    "an ambiguous archive."
                )
    return checked


def open_zip(archive: Path) -> zipfile.ZipFile:
    """Open a zip file; a truncated or non-zip file becomes a UserError."""
    archive = Path(archive)
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise UserError(
            f"{archive} is not a complete zip archive ({exc}): delete it and download it again."
        ) from None


# What reading a damaged member raises (zlib, lzma and bz2 report bad streams their own way).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                zlib.error, lzma.LZMAError, OSError)


def _read_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path) -> Iterator[bytes]:
    try:
        with zf.open(info) as src:
            while chunk := src.read(_COPY_CHUNK):
                yield chunk
    except _READ_ERRORS as exc:
        raise UserError(
            f"{archive} member {info.filename!r} cannot be read ({exc}): the archive is corrupt "
            "or truncated; delete it and download it again."
        ) from None


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> None:
    written = 0
    with open(target, "xb") as dst:
        for chunk in _read_chunks(zf, info, archive):
            written += len(chunk)
            if written > info.file_size:
                raise UserError(
                    f"{archive} member {info.filename!r} unpacks to more than its declared size: "
                    "the archive is corrupt or hostile."
                )
            dst.write(chunk)
    if written != info.file_size:
        raise UserError(
            f"{archive} member {info.filename!r} is shorter than declared: the archive is corrupt; "
            "download it again."
        )


def safe_extract(archive: Path, dest: Path, limits: Limits = DEFAULT_LIMITS, *,
                 durable: bool = False) -> list[Path]:
    """Extract ``archive`` into the new directory ``dest`` (which must not exist yet).

    Returns the extracted regular files. On any problem nothing is left: the checks run before
    anything is written, and a failure while copying removes the temporary directory.
    ``durable``: flush the files to the disk, for files that are published as they are.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise UserError(f"{dest} already exists: remove it before extracting {archive} there.")
    with open_zip(archive) as zf:
        members = check_members(zf, archive, limits)
        # Flushed only when asked: the authors' import reads what it extracts and writes its
        # runs anew (flushed, data/atomic.py); a bundle's files are published as they are
        # (moved out of the scratch folder), so bundle.unpack asks for durable=True.
        atomic_dir(dest, lambda tmp: _extract_members(zf, members, tmp, archive), durable=durable)
    return [dest.joinpath(*rel.parts) for _info, rel, kind in members if kind == "file"]


def _extract_members(zf: zipfile.ZipFile, members: list, into: Path, archive: Path) -> None:
    """Write the checked ``members`` of ``zf`` below the (empty, unpublished) folder ``into``."""
    for info, rel, kind in members:
        target = into.joinpath(*rel.parts)
        try:
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_member(zf, info, target, archive)
        except OSError as exc:  # writing: reading errors are UserErrors already
            raise UserError(
                f"{archive} member {info.filename!r} cannot be extracted into {into.parent} "
                f"({exc.strerror or exc}): check the free space and permissions there."
            ) from None
