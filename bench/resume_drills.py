"""Resume drills: kill the Snakemake head with SIGKILL at six points of a smoke sweep,
recover as the docs say, and check that nothing finished is redone, that a killed train job
resumes from its checkpoint, and that the final results equal an uninterrupted sweep.

    python bench/resume_drills.py [--cores 2] [--points train-start,train-mid,...] [--json F]
                                  [--config KEY=VALUE ...]

``--config`` values go to every Snakemake command of the drills and of the baseline, after the
smoke preset: e.g. ``--config repetitions=2 runs_per_job=2`` drills batches of two runs trained
by one job (docs/workflow.md, "Runs per job").

Each drill runs in its own fresh work directory (MNIST copied in, so nothing is downloaded):
1. start ``snakemake --cores N --configfile workflow/presets/smoke.yaml`` (the head),
2. watch the work directory; at the drill's point send SIGKILL to the head, then to the
   rest of its process group (its local jobs die with it, as when the session or the machine
   goes; on SLURM the jobs would live on: see docs/cluster.md for cancelling them),
3. recover: ``snakemake --unlock`` then ``snakemake --rerun-incomplete`` (same arguments),
4. compare with a baseline sweep that was never interrupted.

Points: train-start (a train job just started, no checkpoint yet), train-mid (after a train
job's first checkpoint), between-jobs (five train jobs finished and recorded), aggregate
(all trained; the aggregation over all runs is running), plots (a figure job is running),
just-published (a run directory has appeared but its job is not yet recorded as finished:
Snakemake cannot tell that run from an interrupted one and runs its job again, which restores
the run from its kept copy, data/kept_runs.py: the same files, so the target is no redo there
either).

Measured per drill: finished outputs redone by the recovery (train runs and other outputs
that were complete at the kill; target 0), for every train job the kill cut off the step it
resumed from (from run.json ``resumed_at_steps`` and the log line ``resuming from
checkpoint at step N``; step 0 means it restarted, which is right only when it had no
checkpoint yet), and whether every run's arrays and the tables equal the baseline bit for bit.
Run on an otherwise idle machine: a drill is a whole smoke sweep (14 short runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = HERE.parent / "shared" / "data" / "mnist"
# The workflow the drills run: a snapshot of the committed checkout (set in main), so that
# edits to the working tree while the drills run cannot change the code between sweeps.
REPO = HERE
CONFIG: list[str] = []  # --config values for every Snakemake command (set in main)
RUNS = Path("results/runs")
FINAL_FILES = (
    "results/metrics/runs.csv",
    "results/metrics/curves.csv.gz",
    "results/tables/reg_ablation.csv",
    "results/tables/prand_ablation.csv",
    "figures/mnist.pdf",
    "figures/mnist_reg_ablation.pdf",
    "figures/mnist_prand_ablation.pdf",
    "figures/sag.pdf",
)
COMPARED_TABLES = (
    "results/metrics/runs.csv",
    "results/metrics/curves.csv.gz",
    "results/tables/reg_ablation.csv",
    "results/tables/prand_ablation.csv",
)


# ---- the state of a work directory -----------------------------------------------------------


def complete_runs(wd: Path) -> list[Path]:
    """Run directories that are complete (published under their final name)."""
    return sorted(p.parent for p in (wd / RUNS).glob("*/*/s*/rep*/run.json"))


def checkpoints(wd: Path) -> list[Path]:
    return sorted((wd / RUNS).glob("*/*/s*/rep*.checkpoint.pt"))


def started_train_logs(wd: Path) -> list[Path]:
    return sorted((wd / "results" / "logs" / "train").glob("*/*/s*/rep*.log"))


def log_to_run(wd: Path, log: Path) -> Path:
    rel = log.relative_to(wd / "results" / "logs" / "train").with_suffix("")
    return wd / RUNS / rel


def any_log(wd: Path, sub: str) -> bool:
    return any((wd / "results" / "logs" / sub).glob("*.log"))


def finished_outputs(wd: Path) -> dict[str, tuple[int, int]]:
    """Every finished output -> (inode, mtime_ns): run dirs by their run.json (a retrained
    run writes a new file, so a new inode; a run restored from its kept copy is a hard link to
    the same file), and the final tables and figures."""
    out = {}
    for run in complete_runs(wd):
        st = (run / "run.json").stat()
        out[str(run.relative_to(wd))] = (st.st_ino, st.st_mtime_ns)
    for name in FINAL_FILES:
        path = wd / name
        if path.is_file():
            st = path.stat()
            out[name] = (st.st_ino, st.st_mtime_ns)
    return out


# ---- kill points -----------------------------------------------------------------------------


def running(wd: Path, needle: str) -> bool:
    """Is a process whose command line contains ``needle`` running in work directory wd?"""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle.encode() in (proc / "cmdline").read_bytes() and os.readlink(proc / "cwd") == str(wd):
                return True
        except OSError:
            pass
    return False


def unregistered(wd: Path) -> set[str]:
    """Outputs Snakemake has started but not yet recorded as finished: its markers in
    .snakemake/incomplete (file names are the base64 of the output path)."""
    import base64

    out = set()
    for marker in (wd / ".snakemake" / "incomplete").glob("*"):
        try:
            out.add(base64.b64decode(marker.name.encode()).decode())
        except ValueError:
            pass
    return out


def registered_runs(wd: Path) -> list[Path]:
    """Complete run directories whose job Snakemake has also recorded as finished."""
    pending = unregistered(wd)
    return [r for r in complete_runs(wd) if str(r.relative_to(wd)) not in pending]


def point_train_start(wd: Path, n_runs: int) -> bool:
    """A train job has just started and has no checkpoint yet."""
    return running(wd, "askdagger_mnist.cli.train") and not checkpoints(wd) and not complete_runs(wd)


def point_train_mid(wd: Path, n_runs: int) -> bool:
    """A train job is mid-run and has written its first checkpoint."""
    return bool(checkpoints(wd))


def point_between_jobs(wd: Path, n_runs: int) -> bool:
    """Five train jobs finished and recorded by Snakemake (none half-recorded); the next
    ones are starting."""
    return len(registered_runs(wd)) >= 5 and len(registered_runs(wd)) == len(complete_runs(wd))


def point_aggregate(wd: Path, n_runs: int) -> bool:
    """All train jobs finished; the aggregation over every run (runs.csv) is running."""
    return len(registered_runs(wd)) == n_runs and running(wd, "results/metrics/runs.csv")


def point_plots(wd: Path, n_runs: int) -> bool:
    """All train jobs finished; a figure job is running."""
    return len(registered_runs(wd)) == n_runs and running(wd, "askdagger_mnist.cli.plot")


def point_just_published(wd: Path, n_runs: int) -> bool:
    """A train job (the 5th or later) has published its run directory, but Snakemake has not
    yet recorded the job as finished (the process is still exiting): the narrowest window."""
    runs = complete_runs(wd)
    pending = unregistered(wd)
    return len(runs) >= 5 and any(str(r.relative_to(wd)) in pending for r in runs)


POINTS = {
    "train-start": point_train_start,
    "train-mid": point_train_mid,
    "between-jobs": point_between_jobs,
    "aggregate": point_aggregate,
    "plots": point_plots,
    "just-published": point_just_published,
}


# ---- running the workflow --------------------------------------------------------------------


def snakemake_args(wd: Path, cores: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(wd), "--cores", str(cores),
        "--configfile", str(REPO / "workflow" / "presets" / "smoke.yaml"), *extra,
        *(["--config", *CONFIG] if CONFIG else []),  # last: --config takes the words after it
    ]


def prepare(wd: Path, mnist_root: Path) -> None:
    raw = wd / "resources" / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in sorted((mnist_root / "MNIST" / "raw").glob("*.gz")):
        shutil.copy2(gz, raw / gz.name)


def snapshot(repo: Path, dest: Path) -> Path:
    """The committed checkout (git HEAD) unpacked into dest."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_snakemake(args: list[str], log: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    with open(log, "ab") as fh:
        rc = subprocess.run(args, stdout=fh, stderr=subprocess.STDOUT).returncode
    return rc, time.monotonic() - t0


def group_members(pgid: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == pgid:
                    pids.append(int(proc.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


@dataclass
class Drill:
    point: str
    description: str
    killed: bool = False
    kill_after_s: float = 0.0
    lock_left: bool = False
    recovery_rc: int = -1
    recovery_s: float = 0.0
    finished_at_kill: int = 0
    runs_finished_at_kill: int = 0
    redone_runs: list = field(default_factory=list)
    redone_other: list = field(default_factory=list)
    unrecorded_at_kill: list = field(default_factory=list)  # published, job not yet recorded
    cut_train_jobs: dict = field(default_factory=dict)  # run -> {"checkpoint": bool, "resumed_at": int|None}
    restored_s: dict = field(default_factory=dict)  # run restored from its kept copy -> job seconds
    arrays_equal: bool = False
    tables_equal: bool = False
    differences: list = field(default_factory=list)
    note: str = ""


def drill(point: str, wd: Path, cores: int, mnist_root: Path, timeout: float, n_runs: int) -> Drill:
    cond = POINTS[point]
    d = Drill(point, (cond.__doc__ or "").strip())
    prepare(wd, mnist_root)
    log = wd / "drill.log"
    with open(log, "ab") as fh:
        head = subprocess.Popen(
            snakemake_args(wd, cores, []), stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    t0 = time.monotonic()
    state_at_kill: dict = {}
    ckpts_at_kill: set = set()
    running_at_kill: list = []
    try:
        while head.poll() is None and time.monotonic() - t0 < timeout:
            if cond(wd, n_runs):
                members = group_members(head.pid)
                head.send_signal(signal.SIGKILL)  # the head dies first ...
                for pid in members:  # ... and the local jobs it started with it
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                head.wait()
                d.killed, d.kill_after_s = True, round(time.monotonic() - t0, 1)
                break
            time.sleep(0.02)
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    if not d.killed:
        d.note = f"point never reached (head rc {head.returncode})"
        return d
    time.sleep(0.5)  # let the killed processes vanish
    state_at_kill = finished_outputs(wd)
    pending = unregistered(wd)
    d.unrecorded_at_kill = sorted(name for name in state_at_kill if name in pending)
    ckpts_at_kill = {str(p) for p in checkpoints(wd)}
    done = {str(p) for p in complete_runs(wd)}
    running_at_kill = [
        log_to_run(wd, lg) for lg in started_train_logs(wd) if str(log_to_run(wd, lg)) not in done
    ]
    d.finished_at_kill = len(state_at_kill)
    d.runs_finished_at_kill = len(done)
    d.lock_left = any((wd / ".snakemake" / "locks").glob("*"))

    # Recovery as documented: unlock (the killed head left its lock), then rerun with
    # --rerun-incomplete.
    run_snakemake(snakemake_args(wd, cores, ["--unlock"]), log)
    d.recovery_rc, d.recovery_s = run_snakemake(
        snakemake_args(wd, cores, ["--rerun-incomplete"]), log
    )
    d.recovery_s = round(d.recovery_s, 1)

    for rel in d.unrecorded_at_kill:  # their jobs ran again: restored, by the job's own word
        sub = Path(rel).relative_to(RUNS) if rel.startswith(str(RUNS)) else None
        job_log = sub and wd / "results" / "logs" / "train" / f"{sub}.log"
        if job_log and job_log.exists() and "restored from its kept copy" in job_log.read_text():
            tsv = (wd / "results" / "benchmarks" / "train" / f"{sub}.tsv").read_text()
            d.restored_s[rel] = float(tsv.splitlines()[1].split("\t")[0])
    after = finished_outputs(wd)
    for name, stamp in state_at_kill.items():
        if after.get(name) != stamp:
            (d.redone_runs if name.startswith(str(RUNS)) else d.redone_other).append(name)
    for run in running_at_kill:
        rel = str(run.relative_to(wd))
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
        resumed = info.get("resumed_at_steps") or []
        log_text = (wd / "results" / "logs" / "train" / (str(run.relative_to(wd / RUNS)) + ".log"))
        said = re.findall(r"resuming from checkpoint at step (\d+)", log_text.read_text()) if log_text.exists() else []
        d.cut_train_jobs[rel] = {
            "had_checkpoint": str(run) + ".checkpoint.pt" in ckpts_at_kill,
            "resumed_at": resumed[0] if resumed else 0,
            "log_says": int(said[0]) if said else None,
        }
    return d


def compare(wd: Path, base: Path) -> list[str]:
    """What differs from the baseline sweep: run directories, arrays, tables (empty: equal)."""
    import pandas as pd

    diff = []
    base_runs = [str(p.relative_to(base)) for p in complete_runs(base)]
    runs = [str(p.relative_to(wd)) for p in complete_runs(wd)]
    diff += [f"missing {r}" for r in sorted(set(base_runs) - set(runs))]
    diff += [f"extra {r}" for r in sorted(set(runs) - set(base_runs))]
    for rel in sorted(set(base_runs) & set(runs)):
        with np.load(wd / rel / "arrays.npz", allow_pickle=False) as x, \
                np.load(base / rel / "arrays.npz", allow_pickle=False) as y:
            if sorted(x.files) != sorted(y.files) or any(
                not np.array_equal(x[k], y[k]) for k in x.files
            ):
                diff.append(f"arrays of {rel}")
    for t in COMPARED_TABLES:
        if not (wd / t).exists() or not pd.read_csv(wd / t).equals(pd.read_csv(base / t)):
            diff.append(t)
    return diff


def redone_recorded(d: Drill) -> list[str]:
    """Redone outputs whose job Snakemake had recorded as finished before the kill (target 0)."""
    return [x for x in d.redone_runs + d.redone_other if x not in d.unrecorded_at_kill]


def table(drills: list[Drill], base_s: float) -> str:
    head = ("point", "killed at", "lock left", "done at kill", "redone (unrecorded)", "cut train jobs -> resumed at step",
            "arrays = base", "tables = base", "restored (job s)", "recovery")
    rows = []
    for d in drills:
        if not d.killed:
            rows.append((d.point, "-", "-", "-", "-", d.note, "-", "-", "-", "-"))
            continue
        cut = ", ".join(
            f"{Path(r).relative_to(RUNS)}: {v['resumed_at']}"
            + (" (ckpt)" if v["had_checkpoint"] else " (no ckpt)")
            for r, v in d.cut_train_jobs.items()
        ) or "none"
        rows.append((
            d.point, f"{d.kill_after_s:.1f} s", "yes" if d.lock_left else "no",
            f"{d.runs_finished_at_kill} runs, {d.finished_at_kill - d.runs_finished_at_kill} files",
            f"{len(redone_recorded(d))} ({len(d.redone_runs) + len(d.redone_other) - len(redone_recorded(d))})",
            cut,
            "yes" if d.arrays_equal else "NO", "yes" if d.tables_equal else "NO",
            ", ".join(f"{v:.2f}" for v in d.restored_s.values()) or "-",
            f"rc {d.recovery_rc}, {d.recovery_s:.0f} s",
        ))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    out.append(
        "\nredone: finished outputs the recovery wrote again whose job Snakemake had recorded "
        "as finished (target 0);\nin parentheses those published so shortly before the kill "
        "that Snakemake had not recorded them yet\n(--rerun-incomplete runs their jobs again; "
        "a run comes back from its kept copy, the same files, so it is not counted)."
    )
    out.append(f"baseline (uninterrupted) smoke sweep: {base_s:.0f} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--points", default=",".join(POINTS), help=f"comma-separated, of {', '.join(POINTS)}")
    p.add_argument("--mnist-root", type=Path, default=DEFAULT_MNIST, help="folder holding MNIST/raw/*.gz")
    p.add_argument("--workdir", type=Path, help="keep the work directories here (default: a temp dir, removed)")
    p.add_argument("--timeout", type=float, default=900, help="seconds a sweep may take to reach its point")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config values for every Snakemake command (after the smoke preset)")
    p.add_argument("--live-tree", action="store_true",
                   help="run the working tree as it is instead of a snapshot of git HEAD")
    args = p.parse_args(argv)
    points = [x.strip() for x in args.points.split(",") if x.strip()]
    unknown = [x for x in points if x not in POINTS]
    if unknown:
        print(f"error: unknown point(s) {', '.join(unknown)}: choose from {', '.join(POINTS)}.", file=sys.stderr)
        return 1
    CONFIG[:] = args.config
    root = args.workdir or Path(tempfile.mkdtemp(prefix="resume-drills-"))
    root.mkdir(parents=True, exist_ok=True)
    global REPO
    try:
        if not args.live_tree:
            REPO = snapshot(HERE, root / "repo")
            print(f"workflow: snapshot of {HERE} at {REPO.name} = git HEAD "
                  f"{subprocess.check_output(['git', '-C', str(HERE), 'rev-parse', '--short', 'HEAD'], text=True).strip()}",
                  flush=True)
        base = root / "baseline"
        prepare(base, args.mnist_root)
        rc, base_s = run_snakemake(snakemake_args(base, args.cores, []), base / "drill.log")
        if rc != 0:
            print(f"error: the uninterrupted sweep failed; see {base / 'drill.log'}.", file=sys.stderr)
            return 1
        n_runs = len(complete_runs(base))
        print(f"baseline sweep: {base_s:.0f} s, {n_runs} runs", flush=True)
        drills = []
        for point in points:
            d = drill(point, root / point, args.cores, args.mnist_root, args.timeout, n_runs)
            if d.killed and d.recovery_rc == 0:
                d.differences = compare(root / point, base)
                d.arrays_equal = not any(x.startswith(("arrays", "missing", "extra")) for x in d.differences)
                d.tables_equal = not any(x in COMPARED_TABLES for x in d.differences)
            drills.append(d)
            print(json.dumps(asdict(d)), flush=True)
        print()
        print(table(drills, base_s))
        if args.json:
            args.json.write_text(json.dumps({"baseline_s": base_s, "drills": [asdict(d) for d in drills]}, indent=2))
        ok = all(
            d.killed and d.recovery_rc == 0 and not redone_recorded(d)
            and d.arrays_equal and d.tables_equal
            and all(v["resumed_at"] > 0 for v in d.cut_train_jobs.values() if v["had_checkpoint"])
            for d in drills
        )
        return 0 if ok else 2
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
