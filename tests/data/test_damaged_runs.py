"""A run directory whose content cannot be used (data/rundir.py, data/invariants.py): one
sentence that says what to do, worded by where the run lies; an error that is not the file's
(no memory) is not called a damaged file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from askdagger_mnist.data import rundir
from askdagger_mnist.data.invariants import InconsistentRun, check_run, run_problem
from askdagger_mnist.data.rundir import DamagedArrays, read_arrays, write_run_files

from test_kept_runs import BATCH, INFO, run_arrays


def a_run(run: Path, arrays: dict | None = None) -> Path:
    run.mkdir(parents=True)
    write_run_files(run, run_arrays() if arrays is None else arrays, INFO)
    return run


def cut_arrays(run: Path) -> Path:
    path = run / "arrays.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return run


def test_a_damaged_run_of_ours_is_made_again_by_deleting_its_folder(tmp_path):
    run = cut_arrays(a_run(tmp_path / "results/runs/sensitivity/sag/s0.9/rep0"))
    with pytest.raises(DamagedArrays) as caught:
        read_arrays(run)
    assert str(caught.value).endswith(
        f"delete the run directory {run} and rerun the workflow (or the command that made the "
        "run), which makes it again.")


@pytest.mark.parametrize("tree", ["results/compare", "results/imported"])
def test_a_damaged_imported_run_is_imported_again_by_deleting_its_whole_archive(tmp_path, tree):
    """Snakemake imports each archive as one output (a directory): a deleted run folder in it
    is imported by nothing, so the advice names the archive's folder."""
    archive = tmp_path / tree / "authors_sensitivity"
    run = cut_arrays(a_run(archive / "sensitivity/sag/s0.9/rep0"))
    with pytest.raises(DamagedArrays) as caught:
        read_arrays(run)
    advice = (f"delete {archive} (the whole imported archive: a run folder deleted in it is "
              "imported by nothing) and rerun the same command, which imports the archive again.")
    assert str(caught.value) == f"{run / 'arrays.npz'} is damaged ({caught.value.reason}): {advice}"
    arrays = run_arrays()
    arrays["r"] = -arrays["r"]
    other = a_run(archive / "sensitivity/sag/s0.9/rep1", arrays)
    with pytest.raises(InconsistentRun) as caught:
        check_run(other, read_arrays(other), BATCH)
    assert str(caught.value).endswith(f"; {advice}")


def test_a_batch_size_below_one_is_a_broken_run_not_a_division_by_zero():
    assert run_problem(run_arrays(), 0) == "its batch size 0 is not a whole number of at least 1"
    assert run_problem(run_arrays(), BATCH) is None


def test_no_memory_for_the_arrays_is_no_damaged_file(tmp_path, monkeypatch):
    run = a_run(tmp_path / "rep0")

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 8.00 GiB")

    monkeypatch.setattr(rundir.np, "load", out_of_memory)
    with pytest.raises(MemoryError):
        read_arrays(run)
    monkeypatch.undo()
    assert set(read_arrays(run)) >= {"u", "train_idx"} and np.load is not out_of_memory
