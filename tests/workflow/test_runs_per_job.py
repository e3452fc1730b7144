"""runs_per_job: one train job trains a batch of a configuration's runs in one process, on the
newest Snakemake and on the declared floor. The runs are those of one process per run, bit for
bit; the other jobs of a batch restore their runs without training; asking for one run of a
batch builds the batch; a head killed in the middle of a batch loses no finished run, and the
same command again trains only what was cut off, from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MNIST_ROOT, REPO, assert_same_run

pytestmark = [pytest.mark.slow, pytest.mark.needs_mnist]

SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
RUNS = [f"results/runs/sensitivity/sag/s0.9/rep{rep}" for rep in range(3)]
CONFIG = [f"mnist_root={MNIST_ROOT}", "s_des=[0.9]", "repetitions=3", "max_steps=80",
          "checkpoint_every=10"]  # fmt: skip (80 steps: a wide window for the kill test)


@pytest.fixture(params=["newest", pytest.param("floor", marks=pytest.mark.system)])
def head(request) -> list[str]:
    if request.param == "newest":
        return [sys.executable, "-m", "snakemake"]
    return [str(request.getfixturevalue("floor_venv") / "bin" / "snakemake")]


def smk_args(head: list[str], workdir: Path, *extra: str, targets=RUNS, config=()) -> list[str]:
    return [*head, *targets, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", "--configfile", str(SMOKE), *extra, "--config", *CONFIG,
            *config]  # fmt: skip


def snakemake(head, workdir: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(smk_args(head, workdir, *extra, **kw), capture_output=True, text=True,
                          timeout=400)  # fmt: skip
    done.output = done.stdout + done.stderr
    return done


def log(workdir: Path, rep: int) -> str:
    return (workdir / f"results/logs/train/sensitivity/sag/s0.9/rep{rep}.log").read_text()


@pytest.fixture(scope="module")
def one_per_process(tmp_path_factory) -> Path:
    """The three runs, one process each (runs_per_job 1, the default)."""
    workdir = tmp_path_factory.mktemp("one_per_process")
    done = snakemake([sys.executable, "-m", "snakemake"], workdir)
    assert done.returncode == 0, done.output
    return workdir


def assert_same_runs(workdir: Path, reference: Path) -> None:
    for run in RUNS:
        assert_same_run(workdir / run, reference / run, info_keys=("metrics", "settings"))


def test_a_batch_is_trained_by_its_first_job_and_restored_by_the_others(tmp_path, head,
                                                                        one_per_process):
    done = snakemake(head, tmp_path, config=["runs_per_job=2"])
    assert done.returncode == 0, done.output
    assert_same_runs(tmp_path, one_per_process)
    first = log(tmp_path, 0)  # repetitions 0 and 1: one process
    assert "run 1 of 2: results/runs/sensitivity/sag/s0.9/rep0" in first
    assert "run 2 of 2: results/runs/sensitivity/sag/s0.9/rep1" in first
    assert "restored from its kept copy" in log(tmp_path, 1) and "step " not in log(tmp_path, 1)
    assert "run written to" in log(tmp_path, 2) and "run 1 of" not in log(tmp_path, 2)
    again = snakemake(head, tmp_path, "--dry-run", config=["runs_per_job=2"])
    assert again.returncode == 0 and "Nothing to be done" in again.output, again.output
    # A changed setting re-runs the three jobs: the first retrains its batch into the kept
    # copies, never into the others' run directories (which hold the older runs until
    # Snakemake deletes them), and their jobs restore the new runs.
    changed = snakemake(head, tmp_path, config=["runs_per_job=2", "max_steps=60"])
    assert changed.returncode == 0, changed.output
    for run in RUNS:
        assert json.loads((tmp_path / run / "run.json").read_text())["n_steps"] == 60
    assert "run kept in results/runs/sensitivity/sag/s0.9/.kept/rep1" in log(tmp_path, 0)
    assert "restored from its kept copy" in log(tmp_path, 1)


def test_asking_for_one_run_of_a_batch_builds_its_batch(tmp_path):
    done = snakemake([sys.executable, "-m", "snakemake"], tmp_path, "--dry-run", "-p",
                     targets=[RUNS[1]], config=["runs_per_job=2"])  # fmt: skip
    assert done.returncode == 0, done.output
    commands = re.findall(r"python -m askdagger_mnist\.cli\.train .*", done.output)
    assert len(commands) == 2, done.output
    assert "--rep 0 " in commands[0] and "--and-next 1 " in commands[0]
    assert "--rep 1 " in commands[1] and "--and-next 0 " in commands[1]


def test_a_head_killed_in_the_middle_of_a_batch_loses_no_finished_run(tmp_path, head,
                                                                       one_per_process):
    proc = subprocess.Popen(smk_args(head, tmp_path, config=["runs_per_job=3"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    cut = tmp_path / f"{RUNS[1]}.checkpoint.pt"  # the batch's second run, under way
    deadline = time.monotonic() + 300
    try:
        while not cut.exists():
            assert proc.poll() is None, "the sweep ended before the second run checkpointed"
            assert time.monotonic() < deadline, "timed out waiting for the second run"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # the head and its job
    finally:
        proc.wait()
    assert (tmp_path / RUNS[0]).is_dir() and not (tmp_path / RUNS[1]).exists()
    unlocked = snakemake(head, tmp_path, "--unlock", config=["runs_per_job=3"])
    assert unlocked.returncode == 0, unlocked.output
    again = snakemake(head, tmp_path, config=["runs_per_job=3"])
    assert again.returncode == 0, again.output
    first = log(tmp_path, 0)
    assert "restored from its kept copy" in first  # rep0: finished before the kill
    assert "resuming from checkpoint" in first  # rep1: from where it was cut
    assert_same_runs(tmp_path, one_per_process)
