"""The run lock of cli/train.py (the rest: tests/cli/test_train_cli.py): whatever goes wrong
while it is taken, the lock file is closed, so no lock stays held by a forgotten handle."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from askdagger_mnist.cli import train
from askdagger_mnist.errors import UserError


@pytest.fixture
def opened(monkeypatch):
    """The files cli/train.py opens."""
    handles = []

    def spy(path, mode):
        handles.append(open(path, mode))
        return handles[-1]

    monkeypatch.setattr(train, "open", spy, raising=False)
    return handles


def test_a_lock_that_fails_for_another_reason_closes_the_file(tmp_path, monkeypatch, opened):
    def no_locks(fh, how):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(train.fcntl, "flock", no_locks)
    with pytest.raises(OSError):
        with train.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
            pass
    assert len(opened) == 1 and opened[0].closed


def test_a_holder_s_unreadable_note_closes_the_file_and_still_names_the_lock(tmp_path, opened):
    lock = tmp_path / "run.checkpoint.pt.lock"
    lock.write_bytes(b"\xff\xfe not text")
    held = os.open(lock, os.O_RDONLY)  # another holder (flock: per open file)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(UserError, match=r"another training process \(unknown\)"):
            with train.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
                pass
    finally:
        os.close(held)
    assert len(opened) == 1 and opened[0].closed


def test_a_failing_name_check_closes_the_file_and_releases_the_lock(tmp_path, monkeypatch, opened):
    def cannot_tell(path, fh):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(train, "_still_named_by", cannot_tell)
    with pytest.raises(PermissionError):
        with train.exclusive_run_lock(tmp_path / "run.checkpoint.pt"):
            pass
    assert len(opened) == 1 and opened[0].closed
    fd = os.open(tmp_path / "run.checkpoint.pt.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)
