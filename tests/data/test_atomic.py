"""data/atomic.py beyond a full disk (tests/data/test_rundir.py): the temporaries a killed
writer leaves, replacing an output, and which errors mean a folder cannot be written."""

from __future__ import annotations

import fcntl
import os
import time

import pytest

from askdagger_mnist.data import atomic


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
