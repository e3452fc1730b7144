"""Atomic writes: a file or a folder appears under its final name complete, or not at all.

Every writer of the package goes through here: run directories and checkpoints, tables and
figures, the MNIST manifest, downloads, extracted archives. Each writes a temporary sibling of
its output (the same folder, so that the rename is one step on one file system), flushes it
to the disk (fsync) so that a rename never publishes an empty or torn file even if the
machine dies, renames it into place as the last step, and removes the temporary on any
failure (Ctrl-C and SIGTERM included: the commands turn SIGTERM into an exception,
cli/common.py). A process killed outright (SIGKILL, the out-of-memory killer) cannot: a file's
writer holds a lock (flock) on its temporary while it writes, so ``remove_stale_temporaries``
tells a dead writer's leftover from a live one's (downloads call it: theirs are large), and
the train command removes all of ``left_temporaries`` under a lock every writer of its run
holds. A write that fails for a full disk or quota is one sentence (``DiskFull``) naming the
output, and so is a folder this process may not write in (``NotWritable``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import UserError

T = TypeVar("T")

# A write that failed for want of space: the errno, or torch.save's C++ writer ("unexpected
# pos", no errno) when it was handed a file name instead of a Python file object.
_NO_SPACE = {errno.ENOSPC: "no space left on its disk", errno.EDQUOT: "your disk quota is used up"}
_TORCH_WRITE_FAILED = ("unexpected pos", "PytorchStreamWriter failed writing", "iostream error")


class DiskFull(UserError):
    """A file or folder could not be written for want of space (nothing was kept)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(
            f"{path} could not be written: {reason} (nothing half-written was kept); free space "
            "there and rerun."
        )


class NotWritable(UserError):
    """The folder of an output cannot be created or written in (read-only, not yours)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} cannot be written: {reason} in {Path(path).parent}; choose "
                         "another place for it, or make that folder writable.")


def no_space_reason(exc: BaseException) -> str | None:
    """Why ``exc`` says a write failed for want of space, or None when it says something else."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, DiskFull):
            return e.reason
        if isinstance(e, OSError) and e.errno in _NO_SPACE:
            return _NO_SPACE[e.errno]
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_FAILED):
        return _NO_SPACE[errno.ENOSPC]
    return None


@contextlib.contextmanager
def reporting_no_space(path: Path) -> Iterator[None]:
    """Turn a write that fails for want of space into ``DiskFull`` naming ``path``."""
    try:
        yield
    except (OSError, RuntimeError, DiskFull) as exc:  # a nested DiskFull: renamed to path
        reason = no_space_reason(exc)
        if reason is None or (isinstance(exc, DiskFull) and exc.path == Path(path)):
            raise
        raise DiskFull(path, reason) from exc


def fsync_path(path: Path, *, directory: bool = False) -> None:
    """Flush a file's data (or, where the file system allows it, a directory's entries) to the
    disk: a rename after it never publishes an empty or torn file, even if the machine dies."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if not directory or exc.errno in _NO_SPACE:
            raise


# Why a folder cannot be written in: not ours, read-only, or a file where a folder should be
# (ENOTDIR; EEXIST from mkdir). Any other error is not the folder's and is raised as it is.
_CANNOT_WRITE_THERE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}
_TMP_HEX = 8  # the random part of a temporary's name: secrets.token_hex(4)
_FRESH_S = 5.0  # an unlocked temporary this young may be one whose writer is about to lock it


def _new_sibling(path: Path, create: Callable[[Path], T], made: list[Path]) -> T:
    """``create`` a fresh ``.{name}.<random>.tmp`` beside ``path`` (its folder made first);
    returns what ``create`` returned. Its name is put in ``made`` before it is created, so
    that the caller removes it whatever interrupts (a signal the moment it exists included).
    A folder that cannot be written in is ``NotWritable``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            made.append(path.with_name(f".{path.name}.{secrets.token_hex(_TMP_HEX // 2)}.tmp"))
            try:
                return create(made[-1])
            except FileExistsError:
                made.pop()  # another writer drew the same name (never ours to remove): again
    except OSError as exc:
        if exc.errno not in _CANNOT_WRITE_THERE:
            raise  # a full disk (reporting_no_space names it), an I/O error, ...: as it is
        raise NotWritable(path, exc.strerror or str(exc)) from exc


def _create_dir(tmp: Path) -> None:
    tmp.mkdir(mode=0o755)


def _create_locked_file(tmp: Path) -> int:
    """The new file ``tmp``, locked: the open descriptor that holds the lock."""
    # 0o666 less the umask, as any new file gets; O_EXCL: never an existing file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner looks at it (_FRESH_S)
    except OSError:
        pass  # a file system without locks: there no cleaner can lock it either, nor remove it
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def _temporary_pattern(path: Path) -> re.Pattern:
    """The names of the temporaries that writes of ``path`` make: ``.{name}.<8 hex digits>.tmp``."""
    return re.compile(re.escape(f".{path.name}.") + f"[0-9a-f]{{{_TMP_HEX}}}" + re.escape(".tmp"))


def _entries_named(folder: Path, matches: Callable[[str], bool]) -> list[os.DirEntry]:
    try:
        return [e for e in os.scandir(folder) if matches(e.name)]
    except OSError:  # no folder (yet), or one we cannot list: nothing of ours there
        return []


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries ``atomic_file(path)`` left when its process was killed outright;
    returns them. Only names of its own pattern (``.{name}.<8 hex digits>.tmp``), only files
    whose lock can be taken (no writer holds it) and that are older than a few seconds."""
    path, removed = Path(path), []
    for entry in _entries_named(path.parent, _temporary_pattern(path).fullmatch):
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone meanwhile, or not a file we may open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a live writer's
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and time.time() - st.st_mtime > _FRESH_S:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def left_temporaries(path: Path) -> list[Path]:
    """What writes of ``path`` leave beside it when their process is killed outright: the
    temporaries of ``atomic_file`` and ``atomic_dir`` (``.{name}.<8 hex digits>.tmp``, a file
    or a folder) and ``replace_dir``'s ``.{name}.old``. A live writer's look the same: remove
    them (``remove_paths``) only holding a lock every writer of ``path`` holds."""
    ours, old = _temporary_pattern(Path(path)), f".{Path(path).name}.old"
    return [Path(e.path) for e in _entries_named(Path(path).parent,
                                                 lambda name: name == old or ours.fullmatch(name))]


def remove_paths(paths: Iterable[Path], ignore_errors: bool = True) -> None:
    """Remove each file or folder (a link: the link, never what it points to) of ``paths``;
    a folder as well as it can, or, ``ignore_errors=False``, raising where it cannot."""
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=ignore_errors)
        else:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: Path, *, mode: int | None = 0o644) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path`` to write; on success it is flushed to the
    disk and becomes ``path`` in one rename, on error it is removed. ``mode``: the file's
    permissions (0o644: results are for every reader; None: as any new file, 0o666 less the
    umask). Readers never see a half-written file; a full disk is ``DiskFull`` naming ``path``."""
    path = Path(path)
    with reporting_no_space(path):
        made: list[Path] = []  # the temporary's name, known before it exists
        locked = None
        try:
            locked = _new_sibling(path, _create_locked_file, made)
            tmp = made[-1]
            yield tmp
            fsync_path(tmp)
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            for tmp in made:
                tmp.unlink(missing_ok=True)
            raise
        finally:
            if locked is not None:  # after the rename or the unlink: never a stale-looking one
                os.close(locked)
        fsync_path(path.parent, directory=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_dir(final: Path, fill: Callable[[Path], None], *, durable: bool = True) -> Path:
    """Create directory ``final`` atomically: ``fill(tmpdir)`` writes the files, then rename.

    An existing ``final`` directory is replaced (``replace_dir``). If ``fill`` raises, nothing
    is left behind and an existing ``final`` stays as it was; a full disk is ``DiskFull``
    naming ``final``. ``durable=False`` skips flushing the files to the disk: for a folder
    that is only ever read by the process that made it (an archive extracted into a scratch
    folder), where a crash loses nothing that is not made again.
    """
    final = Path(final)
    with reporting_no_space(final):
        made: list[Path] = []  # the temporary's name, known before it exists
        try:
            _new_sibling(final, _create_dir, made)
            tmp = made[-1]
            os.chmod(tmp, 0o755)  # mkdir's mode is less the umask; results are for every reader
            fill(tmp)
            if durable:
                _fsync_tree(tmp)
            replace_dir(tmp, final)
        except BaseException:
            for tmp in made:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if durable:
            fsync_path(final.parent, directory=True)
    return final


def _fsync_tree(folder: Path) -> None:
    for sub, _, files in os.walk(folder):
        for name in files:
            fsync_path(Path(sub) / name)
        fsync_path(Path(sub), directory=True)


def replace_dir(ready: Path, final: Path, aside: Path | None = None) -> Path:
    """Rename the finished folder ``ready`` to ``final``; what was there is first moved out of
    the way, and put back if the rename fails.

    Without ``aside``, only an existing directory is replaced: it goes to ``.{name}.old`` beside
    it, removed after; anything else in the way is refused and left as it is. With ``aside``
    (an import's scratch folder, which its caller removes), whatever is at ``final`` (a folder,
    a file, a symbolic link: the link, never what it points to) is moved there, as imports
    always did. Once ``final`` is in place nothing fails: the old folder is removed as well as
    it can be (what is left of a ``.old``, the next replacement removes first).
    """
    ready, final = Path(ready), Path(final)
    in_the_way = final.exists() or final.is_symlink()
    if aside is None and in_the_way and (final.is_symlink() or not final.is_dir()):
        raise UserError(f"{final} exists and is not a directory: move it away (or choose "
                        "another place for the output) and rerun.")
    if not in_the_way:
        os.replace(ready, final)
        return final
    old = Path(aside) if aside is not None else final.with_name(f".{final.name}.old")
    remove_paths([old], ignore_errors=False)
    os.replace(final, old)
    try:
        os.replace(ready, final)
    except BaseException:
        os.replace(old, final)
        raise
    if aside is None:  # (an aside is its caller's to remove)
        shutil.rmtree(old, ignore_errors=True)  # published: a leftover must not fail it
    return final
