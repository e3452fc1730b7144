"""A killed Snakemake head loses no finished run, on the newest Snakemake and on the declared
floor, with nothing but public behaviour: a train job run again restores a finished run from
its kept copy (data/kept_runs.py) instead of training it.

A real head runs three training jobs and is killed with SIGKILL while they run (each job
is frozen with SIGSTOP as it starts, then the head is frozen too):
- run A resumes and finishes while the head is frozen, a moment before the kill: it is
  published but the head never recorded its job;
- run B resumes just before the kill and finishes afterwards, as an orphan;
- run C is killed with the head (cut off).
Recovering as the README says (--unlock, --rerun-incomplete) reruns the three jobs: A and B
come back from their kept copies in about a second each (the same files: same inode, same
finished_at), only C trains, and every run equals an uninterrupted one. Snakemake's provenance
still re-runs A and B when a setting changes.
"""

from __future__ import annotations

import json
import shutil
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from askdagger_mnist.data.hashing import file_hash
from askdagger_mnist.data.kept_runs import DIGESTS_FILE as SHA256SUMS
from askdagger_mnist.settings import RESULTS_VERSION
from conftest import MNIST_ROOT, REPO, assert_same_run

pytestmark = [pytest.mark.slow, pytest.mark.needs_mnist]

SNAKEFILE = REPO / "Snakefile"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
A, B, C = (f"results/runs/{mode}/sag/s0.9/rep0" for mode in ("sensitivity", "specificity", "success"))
# cpu_slots=false: the test freezes each job once it holds its run's lock, before it takes a CPU
# core (cli/train.py); with slots, three jobs on a 2-core machine could leave the job resumed
# first queued for a core that a frozen one holds (a wait the test made, not the workflow).
CONFIG = ["--config", f"mnist_root={MNIST_ROOT}", "s_des=[0.9]", "max_steps=40", "checkpoint_every=10",
          "cpu_slots=false"]  # fmt: skip


NEWEST = [sys.executable, "-m", "snakemake"]


@pytest.fixture(params=["newest", pytest.param("floor", marks=pytest.mark.system)])
def head(request) -> list[str]:
    """The Snakemake that runs the workflow: the installed one, or the declared floor."""
    if request.param == "newest":
        return NEWEST
    return [str(request.getfixturevalue("floor_venv") / "bin" / "snakemake")]


def smk_args(head: list[str], workdir: Path, *extra: str, config=CONFIG,
             snakefile: Path = SNAKEFILE) -> list[str]:
    # Targets first: --config takes every word that follows it.
    return [*head, A, B, C, "-s", str(snakefile), "--directory", str(workdir), "--cores", "3",
            "--configfile", str(SMOKE), *extra, *config]  # fmt: skip


def snakemake(head, workdir: Path, *extra: str, config=CONFIG,
              snakefile: Path = SNAKEFILE) -> subprocess.CompletedProcess:
    proc = subprocess.run(smk_args(head, workdir, *extra, config=config, snakefile=snakefile),
                          capture_output=True, text=True, timeout=400)  # fmt: skip
    proc.output = proc.stdout + proc.stderr
    return proc


def train_log(workdir: Path, run: str) -> str:
    mode = run.split("/")[2]
    return (workdir / f"results/logs/train/{mode}/sag/s0.9/rep0.log").read_text()


def job_seconds(workdir: Path, run: str) -> float:
    """The wall time of the run's last train job, from its benchmark file."""
    mode = run.split("/")[2]
    lines = (workdir / f"results/benchmarks/train/{mode}/sag/s0.9/rep0.tsv").read_text().splitlines()
    return float(lines[1].split("\t")[0])


RESTORED = "restored from its kept copy"


def trained(output: str) -> dict[str, str]:
    """Train jobs of a Snakemake listing: output -> reason."""
    jobs = re.findall(
        r"rule train:\n(?:\s+.*\n)*?\s+output: (\S+)\n(?:\s+.*\n)*?\s+reason: (.*)", output
    )
    return dict(jobs)


def lock_holder(workdir: Path, run: str) -> int | None:
    """The pid written into a running train job's lock (<run>.checkpoint.pt.lock)."""
    try:
        text = (workdir / f"{run}.checkpoint.pt.lock").read_text()
    except FileNotFoundError:
        return None
    m = re.match(r"pid (\d+)", text)
    return int(m.group(1)) if m else None


def stamp(workdir: Path, run: str) -> tuple:
    path = workdir / run / "run.json"
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, json.loads(path.read_text())["finished_at"]


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has finished


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """A, B and C made by one Snakemake that nothing interrupted."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = snakemake(NEWEST, workdir)
    assert proc.returncode == 0, proc.output[-3000:]
    return workdir


def test_finished_runs_survive_a_killed_head_and_only_the_cut_off_run_is_trained(
        tmp_path, head, uninterrupted):  # fmt: skip
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.Popen(smk_args(head, workdir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    pid: dict[str, int] = {}

    def freeze_each_job_as_it_starts() -> bool:
        for run in (A, B, C):
            if run not in pid and (holder := lock_holder(workdir, run)):
                os.kill(holder, signal.SIGSTOP)  # right after it took its lock: far from done
                pid[run] = holder
        return len(pid) == 3 or proc.poll() is not None

    try:
        wait_for(freeze_each_job_as_it_starts, "three training jobs")
        assert proc.poll() is None, "the head ended before its three jobs ran"
        os.kill(proc.pid, signal.SIGSTOP)  # from now on it records nothing
        assert not any((workdir / r).exists() for r in (A, B, C)), "a run finished too early"
        os.kill(pid[A], signal.SIGCONT)  # A finishes while the head is frozen
        wait_for(lambda: not alive(pid[A]), "run A to finish")
        assert (workdir / A / "run.json").is_file()
        # C dies after its first checkpoint, then the head; B runs on. (B resumes first: a
        # stopped process in the group the dead head orphans would get SIGHUP from the kernel.)
        os.kill(pid[C], signal.SIGCONT)
        wait_for((workdir / f"{C}.checkpoint.pt").is_file, "run C's first checkpoint")
        os.kill(pid[C], signal.SIGKILL)
        os.kill(pid[B], signal.SIGCONT)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (workdir / B).exists(), "run B finished before the kill"
        wait_for(lambda: not alive(pid[B]), "the orphaned run B to finish")
    finally:
        for p in [proc.pid, *pid.values()]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    assert (workdir / B / "run.json").is_file() and not (workdir / C).exists()
    kept = {r: stamp(workdir, r) for r in (A, B)}
    assert (workdir / f"{C}.checkpoint.pt").is_file()  # C's cut run resumes from it

    # As the README says: the directory is still locked ...
    proc = snakemake(head, workdir)
    assert proc.returncode != 0 and "--unlock" in proc.output, proc.output[-3000:]
    assert snakemake(head, workdir, "--unlock").returncode == 0
    # ... and --rerun-incomplete reruns the three jobs: A and B restored, only C trains.
    recovery = snakemake(head, workdir, "--rerun-incomplete")
    assert recovery.returncode == 0, recovery.output[-6000:]
    assert set(trained(recovery.output)) == {A, B, C}, recovery.output[-6000:]
    for run, before in kept.items():
        assert RESTORED in train_log(workdir, run), train_log(workdir, run)
        assert stamp(workdir, run) == before, f"{run} was trained again"
        seconds = job_seconds(workdir, run)
        print(f"{run}: restored in {seconds:.2f} s")
        assert seconds < 2.0, f"{run}: restoring took {seconds} s"
    assert re.search(r"resuming from checkpoint at step [1-3]0 ", train_log(workdir, C)), (
        train_log(workdir, C))  # fmt: skip
    for run in (A, B, C):  # every run as if nothing had been interrupted
        assert_same_run(workdir / run, uninterrupted / run, ("metrics", "settings", "n_steps"))
    assert not list((workdir / "results/runs").rglob("*.checkpoint.pt*"))

    # Snakemake's provenance of the restored runs is right: a changed setting re-runs them ...
    other = [*CONFIG, "variants={sag: {p_rand: 0.25}}"]
    proc = snakemake(head, workdir, "--dry-run", config=other)
    jobs = trained(proc.output)
    assert set(jobs) == {A, B, C} and all("Params have changed" in r for r in jobs.values()), (
        proc.output[-3000:]
    )
    # ... and with the settings they were made with there is nothing to do.
    proc = snakemake(head, workdir, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.output, proc.output[-3000:]


def workflow_copy(copy: Path, edit_train_command=lambda text: text, results_version=None) -> Path:
    """This workflow, copied, with the train rule's command edited (a new wording) or the
    package's RESULTS_VERSION set (the Snakefile reads the package from src/ beside it)."""
    copy.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, copy / name)
    for name in ("workflow", "envs", *(["src"] if results_version else [])):
        shutil.copytree(REPO / name, copy / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (copy / "profiles").symlink_to("workflow/profiles")
    if results_version:
        settings = copy / "src" / "askdagger_mnist" / "settings.py"
        text, n = re.subn(r"^RESULTS_VERSION = \d+$", f"RESULTS_VERSION = {results_version}",
                          settings.read_text(), flags=re.M)  # fmt: skip
        assert n == 1
        settings.write_text(text)
    else:
        (copy / "src").symlink_to(REPO / "src")
    rule = copy / "workflow" / "rules" / "train.smk"
    rule.write_text(edit_train_command(rule.read_text()))
    return copy / "Snakefile"


def test_a_new_wording_of_the_train_command_retrains_nothing_and_a_new_results_version_does(
        tmp_path):  # fmt: skip
    """The default profile's rerun triggers leave out the command's wording: a new version of
    the workflow that words it differently plans nothing. Where a user turns the code trigger
    on, every train job runs again and restores its run in about a second, except a run whose
    kept copy was made by code of another results version: that one is trained. Raising
    RESULTS_VERSION re-runs every train job."""
    workdir = tmp_path / "wd"
    workdir.mkdir()
    config = [*CONFIG, "max_steps=30", "checkpoint_every=0"]
    proc = snakemake(NEWEST, workdir, config=config)
    assert proc.returncode == 0, proc.output[-3000:]
    before = {r: stamp(workdir, r) for r in (A, B, C)}
    reworded = workflow_copy(tmp_path / "reworded", lambda text: text.replace(
        '" --checkpoint-every {resources.checkpoint_every:q}',
        '" --progress-every 10 --checkpoint-every {resources.checkpoint_every:q}'))
    assert "--progress-every 10" in (reworded.parent / "workflow/rules/train.smk").read_text()

    dry = snakemake(NEWEST, workdir, "--dry-run", config=config, snakefile=reworded)
    assert dry.returncode == 0 and "Nothing to be done" in dry.output, dry.output[-3000:]

    # C's kept copy claims older code, its digest recorded to match (so that only the version
    # differs): with the code trigger on, only C is trained, its copy not set aside as damaged
    # but replaced as another version's.
    kept = workdir / "results/runs/success/sag/s0.9/.kept/rep0"
    kept_info = kept / "run.json"
    info = json.loads(kept_info.read_text())
    kept_info.unlink()  # a new file: the run directory's run.json (a hard link) stays as it was
    kept_info.write_text(json.dumps({**info, "results_version": info["results_version"] - 1}))
    sums = (kept / SHA256SUMS).read_text()
    (kept / SHA256SUMS).write_text(re.sub(r"^[0-9a-f]{64}(?=  run\.json$)",
                                          file_hash(kept_info), sums, count=1, flags=re.M))
    assert (kept / SHA256SUMS).read_text() != sums
    proc = snakemake(NEWEST, workdir, "--rerun-triggers", "code", config=config,
                     snakefile=reworded)  # fmt: skip
    assert proc.returncode == 0, proc.output[-3000:]
    jobs = trained(proc.output)
    assert set(jobs) == {A, B, C} and all("Code has changed" in r for r in jobs.values()), jobs
    for run in (A, B):
        assert RESTORED in train_log(workdir, run) and stamp(workdir, run) == before[run]
        assert job_seconds(workdir, run) < 2.0
    assert "run written to" in train_log(workdir, C) and stamp(workdir, C) != before[C]
    assert "set aside" not in train_log(workdir, C)
    assert sorted(os.listdir(kept.parent)) == ["rep0"]  # nothing .rejected
    info = json.loads((workdir / C / "run.json").read_text())
    assert info["results_version"] == json.loads(kept_info.read_text())["results_version"]
    raised = workflow_copy(tmp_path / "raised", results_version=RESULTS_VERSION + 1)
    dry = snakemake(NEWEST, workdir, "--dry-run", config=config, snakefile=raised)
    jobs = trained(dry.output)
    assert set(jobs) == {A, B, C} and all("Params have changed" in r for r in jobs.values()), (
        dry.output[-3000:])  # fmt: skip
