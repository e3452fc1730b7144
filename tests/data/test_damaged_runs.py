"""A run directory whose content cannot be used (data/rundir.py, data/invariants.py): one
sentence that says what to do, worded by where the run lies; an error that is not the file's
(no memory) is not called a damaged file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from askdagger_mnist.data import rundir
from askdagger_mnist.data.rundir import read_arrays, write_run_files

from test_kept_runs import INFO, run_arrays


def a_run(run: Path, arrays: dict | None = None) -> Path:
    run.mkdir(parents=True)
    write_run_files(run, run_arrays() if arrays is None else arrays, INFO)
    return run


def test_no_memory_for_the_arrays_is_no_damaged_file(tmp_path, monkeypatch):
    run = a_run(tmp_path / "rep0")

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 8.00 GiB")

    monkeypatch.setattr(rundir.np, "load", out_of_memory)
    with pytest.raises(MemoryError):
        read_arrays(run)
    monkeypatch.undo()
    assert set(read_arrays(run)) >= {"u", "train_idx"} and np.load is not out_of_memory
