"""Several runs of one configuration in one train process (``--rep R --out DIR`` once per run):
each is the same run, bit for bit, as when trained alone; a kill at any point loses no finished
run, and the same command again finishes the others (the cut one from its checkpoint); a
command that cannot work is refused before any run starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from askdagger_mnist.cli import train
from askdagger_mnist.data.kept_runs import kept_copy_of
from askdagger_mnist.data.rundir import holds_run, read_info
from conftest import MNIST_ROOT, assert_same_run

pytestmark = pytest.mark.needs_mnist

STEPS = "60"  # twelve updates; a checkpoint every 5 steps (a wide window for the kill test)
CONFIG = ["--mode", "success", "--s-des", "0.5", "--max-steps", STEPS, "--checkpoint-every", "5",
          "--data-root", str(MNIST_ROOT), "--device", "cpu", "--threads", "1",
          "--progress-every", "0"]  # fmt: skip
REPS = (3, 4, 5)


def pairs(folder: Path, reps=REPS) -> list[str]:
    return [arg for rep in reps for arg in ("--rep", str(rep), "--out", str(folder / f"rep{rep}"))]


def train_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *CONFIG, *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    """Each run trained by a process of its own."""
    folder = tmp_path_factory.mktemp("alone")
    for rep in REPS:
        done = train_cli(*pairs(folder, [rep]))
        assert done.returncode == 0, done.stderr
    return folder


def assert_same_runs(folder: Path, alone: Path, reps=REPS) -> None:
    for rep in reps:
        assert_same_run(folder / f"rep{rep}", alone / f"rep{rep}", info_keys=("metrics", "settings"))


@pytest.mark.slow
def test_runs_trained_in_one_process_are_those_trained_alone(tmp_path, alone):
    done = train_cli(*pairs(tmp_path))
    assert done.returncode == 0, done.stderr
    assert_same_runs(tmp_path, alone)
    lines = done.stderr.splitlines()
    for i, rep in enumerate(REPS, start=1):  # each run's lines say which run they are about
        assert f"run {i} of 3: {tmp_path / f'rep{rep}'}" in lines
        assert f"run written to {tmp_path / f'rep{rep}'}" in lines
        assert kept_copy_of(tmp_path / f"rep{rep}").is_dir()
        assert not (tmp_path / f"rep{rep}.checkpoint.pt").exists()
    # Each run.json has its own wall time and seed.
    infos = [read_info(tmp_path / f"rep{rep}") for rep in REPS]
    assert len({i["seed"]["entropy"] for i in infos}) == 3
    assert all(i["wall_time_s"] > 0 for i in infos)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the process ended before {path} appeared"
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.005)


@pytest.mark.slow
def test_a_kill_in_the_second_run_keeps_the_first_and_the_same_command_finishes(tmp_path, alone):
    proc = subprocess.Popen([sys.executable, "-m", "askdagger_mnist.cli.train", *CONFIG,
                             *pairs(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(tmp_path / "rep4.checkpoint.pt", proc)  # the second run's first checkpoint
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert holds_run(tmp_path / "rep3", read_info(alone / "rep3")["settings"])
    assert not (tmp_path / "rep4").exists() and not (tmp_path / "rep5").exists()
    again = train_cli(*pairs(tmp_path))
    assert again.returncode == 0, again.stderr
    assert f"{tmp_path / 'rep3'} already holds this run" in again.stderr
    assert "resuming from checkpoint" in again.stderr  # the second run, not from the start
    assert_same_runs(tmp_path, alone)
    assert read_info(tmp_path / "rep4")["resumed_at_steps"]


@pytest.mark.slow
def test_a_crash_in_the_first_run_and_a_deleted_finished_run_cost_no_other_run(tmp_path, alone):
    crashed = train_cli(*pairs(tmp_path), "--halt-after", "10")
    assert crashed.returncode == 3 and (tmp_path / "rep3.checkpoint.pt").is_file()
    assert not any((tmp_path / f"rep{rep}").exists() for rep in REPS)
    again = train_cli(*pairs(tmp_path))
    assert again.returncode == 0, again.stderr
    assert_same_runs(tmp_path, alone)
    # As Snakemake deletes a failed job's outputs: the finished runs come back from their kept
    # copies, and only what is missing for good is trained.
    made = read_info(tmp_path / "rep5")["finished_at"]
    for rep in REPS:
        os.rename(tmp_path / f"rep{rep}", tmp_path / f"gone{rep}")
    again = train_cli(*pairs(tmp_path))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("restored from its kept copy") == 3
    assert read_info(tmp_path / "rep5")["finished_at"] == made


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("argv, says", [
    (["--rep", "1", "--out", "{d}/a", "--out", "{d}/b"],
     "give --rep and --out once per run, in pairs: got 1 --rep and 2 --out."),
    (["--rep", "1", "--out", "{d}/a", "--rep", "1", "--out", "{d}/b"],
     "--rep 1 is asked for twice: give each run once."),
    (["--rep", "1", "--out", "{d}/a", "--rep", "2", "--out", "{d}/b/../a"],
     "is asked for twice: give each run once."),
    (["--rep", "0", "--out", "{d}/a", "--rep", "0", "--out", "{d}/b"],
     "--rep 0 is asked for twice: give each run once."),
    (["--rep", "1", "--out", "{d}/a", "--rep", "2", "--out", "{d}/b", "--checkpoint", "{d}/c.pt"],
     "--checkpoint names the checkpoint of one run: with several runs leave it out"),
    # Every run's paths are checked before the first starts: nothing trained for run a.
    (["--rep", "1", "--out", "{d}/a", "--rep", "2", "--out", "{d}/file/b"],
     "--out {d}/file/b"),
])  # fmt: skip
def test_a_command_that_cannot_work_is_refused_before_any_run_starts(tmp_path, capsys, argv,
                                                                       says):
    (tmp_path / "file").write_text("a file of yours")
    before = tree(tmp_path)
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    assert train.main([*CONFIG, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert says.replace("{d}", str(tmp_path)) in err
    assert tree(tmp_path) == before


def test_one_run_is_the_command_it_always_was(tmp_path, capsys):
    """Without --rep the run is repetition 0; one --rep and one --out say nothing more."""
    assert train.main([*CONFIG, "--max-steps", "2", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err.strip() == f"run written to {tmp_path / 'r'}"
    assert json.loads((tmp_path / "r" / "run.json").read_text())["settings"]["rep"] == 0


def test_and_next_trains_the_next_repetitions_into_their_kept_copies(tmp_path, capsys):
    """The runs --and-next adds go into their kept copies only: their run directories are the
    outputs of their own train jobs, which restore them (whatever an older run left there)."""
    (tmp_path / "rep8").mkdir()
    (tmp_path / "rep8" / "run.json").write_text('{"an": "older run, its job not rerun yet"}')
    argv = [*CONFIG, "--max-steps", "2", "--rep", "7", "--out", str(tmp_path / "rep7"),
            "--and-next", "2"]  # fmt: skip
    assert train.main(argv) == 0
    assert json.loads((tmp_path / "rep7" / "run.json").read_text())["settings"]["rep"] == 7
    for rep in (8, 9):
        kept = json.loads((tmp_path / ".kept" / f"rep{rep}" / "run.json").read_text())
        assert kept["settings"]["rep"] == rep
    assert not (tmp_path / "rep9").exists()
    assert json.loads((tmp_path / "rep8" / "run.json").read_text()) == {
        "an": "older run, its job not rerun yet"}
    err = capsys.readouterr().err
    assert f"run kept in {tmp_path / '.kept' / 'rep9'}, for the train job of " in err
    assert train.main(argv) == 0  # again: nothing to do, nothing trained
    assert "step " not in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("torn", [None, "", "[]"], ids=["missing", "empty", "not-an-object"])
def test_and_next_trains_again_over_a_kept_copy_whose_run_json_is_torn(tmp_path, torn):
    """A kept copy whose run.json (missing, empty, not an object) says nothing of whose run it is
    holds no run: the batch trains that run into it again, as the run's own job would, instead
    of stopping there on every rerun."""
    (tmp_path / ".kept" / "rep8").mkdir(parents=True)
    if torn is not None:
        (tmp_path / ".kept" / "rep8" / "run.json").write_text(torn)
    argv = [*CONFIG, "--max-steps", "2", "--rep", "7", "--out", str(tmp_path / "rep7"),
            "--and-next", "1"]  # fmt: skip
    assert train.main(argv) == 0
    assert read_info(kept_copy_of(tmp_path / "rep8"))["settings"]["rep"] == 8


@pytest.mark.parametrize("argv, says", [
    (["--rep", "1", "--out", "{d}/run", "--and-next", "1"],
     "--and-next names the next runs' directories after --out, which must then end in rep1"),
    (["--rep", "1", "--out", "{d}/rep1", "--rep", "2", "--out", "{d}/rep2", "--and-next", "1"],
     "--and-next adds the next repetitions to one run: give --rep and --out once."),
    (["--rep", "1", "--out", "{d}/rep1", "--and-next", "-1"], "--and-next must be >= 0, not -1."),
])  # fmt: skip
def test_and_next_that_cannot_work_is_refused(tmp_path, capsys, argv, says):
    argv = [a.replace("{d}", str(tmp_path)) for a in argv]
    assert train.main([*CONFIG, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and says in err, err
    assert list(tmp_path.iterdir()) == []
