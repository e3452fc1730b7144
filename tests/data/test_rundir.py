"""Run directories and atomic writes (data/rundir.py, data/atomic.py, data/checkpoint.py) when the disk fills
up: one sentence naming the path and what to do, nothing half-written left behind, and what
was already there kept."""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest
import torch

from askdagger_mnist.data import atomic, rundir
from askdagger_mnist.errors import UserError

BIG = 1_000_000  # bytes: more than the small disk holds


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 300 kB tmpfs (unmounted afterwards)."""
    where = tmp_path / "disk"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(where)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"a full disk is simulated with a small tmpfs, and mounting one is not "
                    f"permitted here ({proc.stderr.strip() or proc.returncode})")  # fmt: skip
    yield where
    # (lazily, where a file torch failed to write is still held open by the traceback)
    if subprocess.run(["umount", str(where)], capture_output=True).returncode:
        subprocess.run(["umount", "--lazy", str(where)], check=False)


def _says_disk_full(exc: UserError, path) -> None:
    message = str(exc)
    assert str(path) in message and "space" in message and "rerun" in message, message
    assert "\n" not in message


def test_atomic_file_on_a_full_disk(full_disk):
    path = full_disk / "big.bin"
    with pytest.raises(UserError) as exc:
        with atomic.atomic_file(path) as tmp:
            tmp.write_bytes(b"x" * BIG)
    _says_disk_full(exc.value, path)
    assert os.listdir(full_disk) == []


def test_atomic_file_keeps_the_previous_version_when_the_disk_is_full(full_disk):
    path = full_disk / "table.csv"
    path.write_text("old\n")
    with pytest.raises(UserError):
        with atomic.atomic_file(path) as tmp, open(tmp, "wb") as fh:
            fh.write(b"x" * BIG)
    assert path.read_text() == "old\n" and os.listdir(full_disk) == ["table.csv"]


def test_torch_save_on_a_full_disk(full_disk):
    """torch.save to a file name fails in C++ ('unexpected pos', no errno): still one sentence."""
    path = full_disk / "model.pt"
    with pytest.raises(UserError) as exc:
        with atomic.atomic_file(path) as tmp:
            torch.save({"w": torch.zeros(BIG // 4)}, tmp)
    _says_disk_full(exc.value, path)
    assert os.listdir(full_disk) == []


def test_atomic_dir_on_a_full_disk_leaves_nothing_and_keeps_the_old_directory(full_disk):
    final = full_disk / "rep0"
    arrays = {"u": np.zeros(8), "k": np.zeros(8), "g": np.zeros(8), "c": np.zeros(8),
              "r": np.zeros(8), "q": np.zeros(8), "q_a": np.zeros(8)}  # fmt: skip
    atomic.atomic_dir(final, lambda tmp: rundir.write_run_files(tmp, arrays, {"n": 1}))
    before = {p.name: p.read_bytes() for p in final.iterdir()}

    def fill(tmp):
        rundir.write_run_files(tmp, arrays, {"n": 2})
        rundir.save_npz(tmp / "noise.npz", {"x": np.random.default_rng(0).random(BIG // 8)})

    with pytest.raises(UserError) as exc:
        atomic.atomic_dir(final, fill)
    _says_disk_full(exc.value, final)
    assert os.listdir(full_disk) == ["rep0"]
    assert {p.name: p.read_bytes() for p in final.iterdir()} == before


def test_quota_exceeded_is_one_sentence_too(tmp_path):
    def fill(tmp):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    with pytest.raises(UserError) as exc:
        atomic.atomic_dir(tmp_path / "run", fill)
    assert str(tmp_path / "run") in str(exc.value) and "quota" in str(exc.value)
    assert os.listdir(tmp_path) == []


def test_other_errors_pass_through_and_leave_nothing(tmp_path):
    def fill(tmp):
        (tmp / "part").write_text("half")
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        atomic.atomic_dir(tmp_path / "run", fill)
    with pytest.raises(KeyError):
        with atomic.atomic_file(tmp_path / "f") as tmp:
            tmp.write_text("half")
            raise KeyError("x")
    assert os.listdir(tmp_path) == []
