"""data/atomic.py beyond a full disk (tests/data/test_rundir.py): the temporaries a killed
writer leaves, replacing an output, and which errors mean a folder cannot be written."""

from __future__ import annotations

import errno
import fcntl
import os
import time

import pytest

from askdagger_mnist.data import atomic
from askdagger_mnist.errors import UserError


def _age(path, seconds=600.0):
    os.utime(path, (time.time() - seconds, time.time() - seconds))


def test_a_writer_holds_its_temporary_locked_so_no_cleaner_takes_it(tmp_path):
    out = tmp_path / "table.csv"
    with atomic.atomic_file(out) as tmp:
        tmp.write_text("half")
        _age(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert atomic.remove_stale_temporaries(out) == [] and tmp.exists()
        tmp.write_text("whole")
    assert out.read_text() == "whole" and os.listdir(tmp_path) == ["table.csv"]


def test_only_old_unlocked_temporaries_of_the_output_s_own_pattern_are_stale(tmp_path):
    out = tmp_path / "a.zip"
    stale, fresh = tmp_path / ".a.zip.0123abcd.tmp", tmp_path / ".a.zip.89abcdef.tmp"
    others = [tmp_path / n for n in (".a.zip.notes.tmp", ".b.zip.0123abcd.tmp", "a.zip.0123abcd.tmp",
                                     ".a.zip.0123abcd.tmp.keep")]
    for path in [stale, fresh, *others]:
        path.write_bytes(b"x")
    for path in [stale, *others]:
        _age(path)
    assert atomic.remove_stale_temporaries(out) == [stale]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in [fresh, *others])
    assert atomic.remove_stale_temporaries(tmp_path / "no-such-folder" / "a.zip") == []


class _Interrupted(BaseException):
    pass


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_a_signal_the_moment_the_temporary_exists_still_removes_it(tmp_path, monkeypatch, kind):
    """SIGINT (SIGTERM under the CLIs) right after the temporary was created, before its
    writer got the name back: it must not be left behind."""
    import signal

    name = {"file": "_create_locked_file", "dir": "_create_dir"}[kind]
    real_create = getattr(atomic, name)

    def create_then_a_signal(tmp):
        made = real_create(tmp)
        os.kill(os.getpid(), signal.SIGINT)  # its handler raises here, in the main thread
        return made

    def interrupt(signum, frame):
        raise _Interrupted()

    monkeypatch.setattr(atomic, name, create_then_a_signal)
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with pytest.raises(_Interrupted):
            if kind == "file":
                with atomic.atomic_file(tmp_path / "out.csv") as tmp:
                    tmp.write_text("never")
            else:
                atomic.atomic_dir(tmp_path / "out", lambda tmp: None)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert os.listdir(tmp_path) == []


def _ready(tmp_path, text="new"):
    ready = tmp_path / "ready"
    ready.mkdir()
    (ready / "f").write_text(text)
    return ready


@pytest.mark.parametrize("in_the_way", ["file", "symlink", "broken symlink", "folder"])
def test_an_import_moves_whatever_is_in_the_way_aside(tmp_path, in_the_way):
    final, aside, target = tmp_path / "out", tmp_path / "scratch" / "replaced", tmp_path / "target"
    aside.parent.mkdir()
    target.mkdir()
    (target / "keep").write_text("mine")
    if in_the_way == "file":
        final.write_text("a file")
    elif in_the_way == "folder":
        final.mkdir()
        (final / "f").write_text("old")
    else:
        final.symlink_to(target if in_the_way == "symlink" else tmp_path / "nowhere")
    atomic.replace_dir(_ready(tmp_path), final, aside=aside)
    assert final.is_dir() and not final.is_symlink() and (final / "f").read_text() == "new"
    assert aside.exists() or aside.is_symlink()  # the caller's scratch removal takes it
    assert (target / "keep").read_text() == "mine"  # a link is moved, never what it points to


def test_a_run_directory_is_never_put_where_a_file_is(tmp_path):
    final = tmp_path / "run"
    final.write_text("not a run")
    with pytest.raises(UserError, match="exists and is not a directory"):
        atomic.replace_dir(_ready(tmp_path), final)
    assert final.read_text() == "not a run"


def test_once_published_an_old_folder_that_resists_removal_does_not_fail_it(tmp_path, monkeypatch):
    import shutil

    real_rmtree = shutil.rmtree

    def busy_rmtree(path, ignore_errors=False, **kwargs):  # say, a file held open on NFS
        if not ignore_errors:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        real_rmtree(path, ignore_errors=True, **kwargs)

    final = tmp_path / "out"
    final.mkdir()
    (final / "f").write_text("old")
    monkeypatch.setattr(atomic.shutil, "rmtree", busy_rmtree)
    assert atomic.replace_dir(_ready(tmp_path), final) == final
    assert (final / "f").read_text() == "new"
    assert atomic.atomic_dir(final, lambda tmp: (tmp / "f").write_text("newer")) == final
    assert (final / "f").read_text() == "newer"


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_a_folder_that_refuses_writes_is_not_writable(tmp_path, monkeypatch, code):
    def refuse(tmp):
        raise OSError(code, os.strerror(code), str(tmp))

    monkeypatch.setattr(atomic, "_create_locked_file", refuse)
    with pytest.raises(atomic.NotWritable, match=os.strerror(code)):
        atomic.write_bytes_atomic(tmp_path / "f", b"x")


def test_a_file_where_the_folder_should_be_is_not_writable(tmp_path):
    (tmp_path / "results").write_text("a file")
    for where in (tmp_path / "results" / "f", tmp_path / "results" / "sub" / "f"):
        with pytest.raises(atomic.NotWritable):
            atomic.write_bytes_atomic(where, b"x")


@pytest.mark.parametrize("code", [errno.EIO, errno.ENAMETOOLONG, errno.EMFILE])
def test_other_errors_making_the_temporary_are_raised_as_they_are(tmp_path, monkeypatch, code):
    def fail(tmp):
        raise OSError(code, os.strerror(code), str(tmp))

    monkeypatch.setattr(atomic, "_create_locked_file", fail)
    with pytest.raises(OSError) as exc:
        atomic.write_bytes_atomic(tmp_path / "f", b"x")
    assert not isinstance(exc.value, atomic.NotWritable) and exc.value.errno == code
