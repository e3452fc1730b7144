"""The run lock (cli/run_lock.py; the train command itself: tests/cli/test_train_cli.py):
whatever goes wrong while it is taken, the lock file is closed, so no lock stays held by a
forgotten handle."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from askdagger_mnist.cli import run_lock
from askdagger_mnist.errors import UserError


@pytest.fixture
def opened(monkeypatch):
    """The files cli/run_lock.py opens."""
    handles = []

    def spy(path, mode):
        handles.append(open(path, mode))
        return handles[-1]

    monkeypatch.setattr(run_lock, "open", spy, raising=False)
    return handles


def test_a_lock_that_fails_for_another_reason_closes_the_file(tmp_path, monkeypatch, opened):
    def io_error(fh, how):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(run_lock.fcntl, "flock", io_error)
    with pytest.raises(OSError):
        with run_lock.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
            pass
    assert len(opened) == 1 and opened[0].closed


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_on_a_file_system_without_locks_the_run_goes_on_and_says_so(tmp_path, monkeypatch,
                                                                      opened, capsys, code):
    """Some NFS and Lustre mounts have no flock: the run is trained without its lock (as
    data/atomic.py writes without one there), with one line in the job's log, not a
    traceback; the lock file is gone afterwards as always."""
    def no_locks(fh, how):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    with run_lock.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
        assert (tmp_path / "run.checkpoint.pt.lock").read_text().startswith(f"pid {os.getpid()}")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {tmp_path} is on a file system "
                                                   f"without locks ({os.strerror(code)})")
    assert "no other process trains it at the same time" in err
    assert not (tmp_path / "run.checkpoint.pt.lock").exists() and opened[0].closed


def test_a_holder_s_unreadable_note_closes_the_file_and_still_names_the_lock(tmp_path, opened):
    lock = tmp_path / "run.checkpoint.pt.lock"
    lock.write_bytes(b"\xff\xfe not text")
    held = os.open(lock, os.O_RDONLY)  # another holder (flock: per open file)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(UserError, match=r"another training process \(unknown\)"):
            with run_lock.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
                pass
    finally:
        os.close(held)
    assert len(opened) == 1 and opened[0].closed


def test_a_failing_name_check_closes_the_file_and_releases_the_lock(tmp_path, monkeypatch, opened):
    def cannot_tell(path, fh):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(run_lock, "_still_named_by", cannot_tell)
    with pytest.raises(PermissionError):
        with run_lock.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
            pass
    assert len(opened) == 1 and opened[0].closed
    fd = os.open(tmp_path / "run.checkpoint.pt.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)


def test_a_lock_file_its_holder_deleted_meanwhile_is_not_the_lock_taken(tmp_path, monkeypatch):
    """The race of deleting a lock file: this process opened it, then its holder deleted it
    (as a holder does when done) and released it. Locking the deleted file would let a third
    process lock a new one under the same name: the file now under the name is taken."""
    lock = tmp_path / "run.checkpoint.pt.lock"
    lock.write_text("pid 1 on elsewhere")
    opened = []

    def open_then_the_holder_deletes_it(path, mode):
        fh = open(path, mode)
        if not opened:
            Path(path).unlink()
        opened.append(fh)
        return fh

    monkeypatch.setattr(run_lock, "open", open_then_the_holder_deletes_it, raising=False)
    with run_lock.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
        assert len(opened) == 2 and opened[0].closed
        assert os.stat(lock).st_ino == os.fstat(opened[1].fileno()).st_ino
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")
    assert not lock.exists()  # deleted by its holder, as before
