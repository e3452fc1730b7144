"""A killed Snakemake head loses no finished run (workflow/rules/recovery.smk).

A real head runs three training jobs and is killed with SIGKILL while they run (each job
is frozen with SIGSTOP as it starts, then the head is frozen too):
- run A resumes and finishes while the head is frozen, a moment before the kill: it is
  published but the head never recorded its job;
- run B resumes just before the kill and finishes afterwards, as an orphan;
- run C is killed with the head (cut off).
Recovering as the docs say (--unlock, --rerun-incomplete) must keep A and B as they are (same
files, same finished_at: not trained again) and train only C; Snakemake's provenance must
still re-run A and B when a setting changes, and a checkpoint left beside a finished run goes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MNIST_ROOT, REPO

pytestmark = [pytest.mark.slow, pytest.mark.needs_mnist]

SNAKEFILE = REPO / "Snakefile"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
A, B, C = (f"results/runs/{mode}/sag/s0.9/rep0" for mode in ("sensitivity", "specificity", "success"))
CONFIG = ["--config", f"mnist_root={MNIST_ROOT}", "s_des=[0.9]", "max_steps=40", "checkpoint_every=10"]


def smk_args(workdir: Path, *extra: str, config=CONFIG) -> list[str]:
    # Targets first: --config takes every word that follows it.
    return [sys.executable, "-m", "snakemake", A, B, C, "-s", str(SNAKEFILE), "--directory", str(workdir),
            "--cores", "3", "--configfile", str(SMOKE), *extra, *config]  # fmt: skip


def snakemake(workdir: Path, *extra: str, config=CONFIG) -> subprocess.CompletedProcess:
    proc = subprocess.run(smk_args(workdir, *extra, config=config), capture_output=True, text=True,
                          timeout=400)  # fmt: skip
    proc.output = proc.stdout + proc.stderr
    return proc


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


def unrecorded(workdir: Path) -> set[str]:
    """Outputs Snakemake marked as started but never recorded as finished."""
    return {base64.urlsafe_b64decode(p.name).decode()
            for p in (workdir / ".snakemake" / "incomplete").glob("*")}  # fmt: skip


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


def test_finished_runs_survive_a_killed_head_and_only_the_cut_off_run_is_trained(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    head = subprocess.Popen(smk_args(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    pid: dict[str, int] = {}

    def freeze_each_job_as_it_starts() -> bool:
        for run in (A, B, C):
            if run not in pid and (holder := lock_holder(workdir, run)):
                os.kill(holder, signal.SIGSTOP)  # right after it took its lock: far from done
                pid[run] = holder
        return len(pid) == 3 or head.poll() is not None

    try:
        wait_for(freeze_each_job_as_it_starts, "three training jobs")
        assert head.poll() is None, "the head ended before its three jobs ran"
        os.kill(head.pid, signal.SIGSTOP)  # from now on it records nothing
        assert not any((workdir / r).exists() for r in (A, B, C)), "a run finished too early"
        os.kill(pid[A], signal.SIGCONT)  # A finishes while the head is frozen
        wait_for(lambda: not alive(pid[A]), "run A to finish")
        assert (workdir / A / "run.json").is_file()
        # C dies, then the head; B runs on. (B resumes first: a stopped process in the group
        # the dead head orphans would get SIGHUP from the kernel.)
        os.kill(pid[C], signal.SIGKILL)
        os.kill(pid[B], signal.SIGCONT)
        os.kill(head.pid, signal.SIGKILL)
        head.wait()
        assert not (workdir / B).exists(), "run B finished before the kill"
        wait_for(lambda: not alive(pid[B]), "the orphaned run B to finish")
    finally:
        for p in [head.pid, *pid.values()]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.wait()
    assert (workdir / B / "run.json").is_file() and not (workdir / C).exists()
    assert {A, B, C} <= unrecorded(workdir)  # the head recorded none of the three
    kept = {r: stamp(workdir, r) for r in (A, B)}
    # As if A's job had been killed between publishing its run and removing its checkpoint.
    (workdir / f"{A}.checkpoint.pt").write_bytes(b"left over")

    # Other settings than A and B were made with: nothing is kept, nothing is changed.
    other = [*CONFIG, "variants={sag: {p_rand: 0.25}}"]
    proc = snakemake(workdir, "--rerun-incomplete", "--dry-run", config=other)
    assert proc.returncode == 0, proc.output[-3000:]
    assert set(trained(proc.output)) == {A, B, C}, proc.output[-3000:]
    assert {A, B} <= unrecorded(workdir) and (workdir / f"{A}.checkpoint.pt").exists()
    # As docs/workflow.md says: the directory is still locked ...
    proc = snakemake(workdir)
    assert proc.returncode != 0 and "--unlock" in proc.output, proc.output[-3000:]
    assert snakemake(workdir, "--unlock").returncode == 0
    # ... and --rerun-incomplete trains only the run that was cut off.
    proc = snakemake(workdir, "--rerun-incomplete")
    assert proc.returncode == 0, proc.output[-6000:]
    assert set(trained(proc.output)) == {C}, proc.output[-6000:]
    for run, before in kept.items():
        assert stamp(workdir, run) == before, f"{run} was trained again"
    assert json.loads((workdir / C / "run.json").read_text())["n_steps"] == 40
    assert not list((workdir / "results/runs").rglob("*.checkpoint.pt*"))
    assert not unrecorded(workdir)

    # Snakemake's provenance of the kept runs is right: a changed setting re-runs them ...
    proc = snakemake(workdir, "--dry-run", config=other)
    jobs = trained(proc.output)
    assert set(jobs) == {A, B, C} and all("Params have changed" in r for r in jobs.values()), (
        proc.output[-3000:]
    )
    # ... and with the settings they were made with there is nothing to do.
    proc = snakemake(workdir, "--dry-run")
    assert proc.returncode == 0 and "Nothing to be done" in proc.output, proc.output[-3000:]


def test_a_new_wording_of_the_train_command_retrains_nothing_but_other_settings_do(tmp_path):
    """Runs recorded by an older version of the workflow, whose train command was worded
    differently (simulated: the recorded code edited), are kept when made with the configured
    settings and, for a run from before the learning-rate schedule (no lr_schedule in its
    run.json), when its epoch count stayed below the first milestone. A run whose run.json
    says other settings, or whose old constant rate would have dropped, is trained again."""
    import numpy as np

    workdir = tmp_path / "wd"
    workdir.mkdir()
    config = [*CONFIG, "max_steps=30", "checkpoint_every=0"]
    proc = snakemake(workdir, config=config)
    assert proc.returncode == 0, proc.output[-3000:]
    metadata = workdir / ".snakemake" / "metadata"
    for run in (A, B, C):
        record = metadata / base64.urlsafe_b64encode(run.encode()).decode()
        data = json.loads(record.read_text())
        assert "--engine" in data["code"]
        data["code"] = data["code"].replace(" --jobs-per-gpu {resources.jobs_per_gpu}", "")
        record.write_text(json.dumps(data))
        info_file = workdir / run / "run.json"
        info = json.loads(info_file.read_text())
        del info["lr_schedule"]  # made before the schedule was emulated
        if run == C:
            info["settings"]["p_rand"] = 0.2  # C claims other settings than this config's
        info_file.write_text(json.dumps(info))
    # B: a training set of 100 samples throughout: 5 epochs per update, 25 after 5 updates,
    # where today's rate drops and the old constant one did not.
    arrays = dict(np.load(workdir / B / "arrays.npz"))
    arrays["q"] = np.zeros_like(arrays["q"])
    arrays["q"][:100] = 1
    np.savez(workdir / B / "arrays.npz", **arrays)

    dry = snakemake(workdir, "--dry-run", config=config)
    assert dry.returncode == 0, dry.output[-3000:]
    assert "1 finished run(s) were made with another wording of the train command" in dry.output
    assert set(trained(dry.output)) == {B, C}, trained(dry.output)
    assert all("Code has changed" in reason for reason in trained(dry.output).values())
    again = snakemake(workdir, "--dry-run", config=config)  # A recorded once, for good
    assert set(trained(again.output)) == {B, C} and "another wording" not in again.output
