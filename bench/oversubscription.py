"""Benchmark: more training jobs than cores, as `snakemake --cores 8` starts them on a smaller
machine. N full runs of the train CLI (real MNIST), each a process of its own, in three ways:

    all-unpinned   all N at once, without CPU core slots (--no-cpu-slots): the cores time-shared
    all-slots      all N at once, with CPU core slots (the default): at most one job per core
                   trains, the others wait asleep (runner/cpu_slots.py)
    two-unpinned   two at a time (the next starts when one ends), without slots

and, with ``--ways snakemake-cores8,snakemake-cores2``, as the README's command starts them: the
workflow itself (Snakefile, config.yaml as it is, CPU core slots on) asked for the N run
directories with ``--cores 8`` or ``--cores 2``:

    python bench/oversubscription.py [--data-root DIR] [--runs 8] [--max-steps N]
                                     [--ways all-unpinned,all-slots,two-unpinned] [--per-run]
                                     [--rounds 1]

For each way: the wall time from the first start to the last exit, and the CPU time of all its
processes (user + system, from each child's rusage: os.wait4; for a Snakemake way, the
Snakemake process and every job it ran), with each run's own on ``--per-run`` (not for the
Snakemake ways). ``--rounds R`` measures the ways R times, interleaved (one of each per round),
and prints each round and the median. The runs of each way are repetitions 0..N-1 of sensitivity, s_des 0.9, in a
scratch folder; the CPU core slots of the runs live in that folder too (TMPDIR), so other jobs
of the machine neither wait for them nor hold them up. At the end, every run is checked to be
the same run in every way (its arrays, bit for bit). Measure on a quiet machine: other load
makes both the time-sharing and the waiting look different.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the checkout's package, as the children run it
WAYS = {"all-unpinned": ("all", "--no-cpu-slots"), "all-slots": ("all", "--cpu-slots"),
        "two-unpinned": (2, "--no-cpu-slots")}
SNAKEMAKE_WAYS = {"snakemake-cores8": 8, "snakemake-cores2": 2}  # way -> --cores
RUN = "results/runs/sensitivity/sag/s0.9/rep{rep}"  # a run's directory in the workflow


def train_command(args, rep: int, out: Path, slots_flag: str) -> list[str]:
    cmd = [sys.executable, "-m", "askdagger_mnist.cli.train", "--mode", "sensitivity",
           "--s-des", "0.9", "--rep", str(rep), "--data-root", str(args.data_root),
           "--out", str(out), "--device", "cpu", "--threads", "1", "--engine", args.engine,
           "--progress-every", "0", slots_flag]
    return cmd + (["--max-steps", str(args.max_steps)] if args.max_steps else [])


def run_at_most(commands: list[list[str]], at_once: int, env: dict, logs: Path) -> dict:
    """Run ``commands``, at most ``at_once`` at a time, each started as soon as a slot frees
    (as Snakemake does); the wall time of all and each run's wall and CPU seconds."""
    pending = list(enumerate(commands))
    running: dict[int, tuple[int, float]] = {}  # pid -> (index, start)
    runs: dict[int, dict] = {}
    started = time.perf_counter()
    while pending or running:
        while pending and len(running) < at_once:
            i, cmd = pending.pop(0)
            with open(logs / f"run{i}.log", "w") as log:
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[proc.pid] = (i, time.perf_counter())
            proc.returncode = 0  # reaped below with os.wait4; keeps Popen from waiting again
        pid, status, usage = os.wait4(-1, 0)
        i, start = running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit(f"run {i} failed (exit {code}): see {logs / f'run{i}.log'}")
        runs[i] = {"wall_s": time.perf_counter() - start,
                   "cpu_s": usage.ru_utime + usage.ru_stime}
    return {"wall_s": time.perf_counter() - started, "runs": [runs[i] for i in sorted(runs)]}


def snakemake_command(args, folder: Path, cores: int) -> list[str]:
    """The workflow asked for the N run directories, as a user types it (plus the data)."""
    config = [f"mnist_root={args.data_root}", f"engine={args.engine}"]
    if args.max_steps:
        config.append(f"max_steps={args.max_steps}")
    return [sys.executable, "-m", "snakemake", *(RUN.format(rep=r) for r in range(args.runs)),
            "--snakefile", str(REPO / "Snakefile"), "--directory", str(folder),
            "--cores", str(cores), "--quiet", "--config", *config]


def run_snakemake(command: list[str], env: dict, logs: Path) -> dict:
    """Run one Snakemake head to its end: its wall time and the CPU time of it and its jobs."""
    started = time.perf_counter()
    with open(logs / "snakemake.log", "w") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"Snakemake failed (exit {proc.returncode}): see {logs / 'snakemake.log'}")
    # A child's rusage includes the descendants it waited for: here, every job.
    return {"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime,
            "runs": []}


def run_dir(scratch: Path, way: str, rep: int) -> Path:
    folder = scratch / way
    return folder / RUN.format(rep=rep) if way in SNAKEMAKE_WAYS else folder / f"rep{rep}"


def measure(args, way: str, scratch: Path) -> dict:
    folder = scratch / way
    (folder / "tmp").mkdir(parents=True)
    (folder / "logs").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TMPDIR": str(folder / "tmp")}
    if way in SNAKEMAKE_WAYS:
        return run_snakemake(snakemake_command(args, folder, SNAKEMAKE_WAYS[way]), env,
                             folder / "logs")
    at_once, slots_flag = WAYS[way]
    commands = [train_command(args, rep, folder / f"rep{rep}", slots_flag)
                for rep in range(args.runs)]
    result = run_at_most(commands, args.runs if at_once == "all" else at_once, env,
                         folder / "logs")
    result["cpu_s"] = sum(r["cpu_s"] for r in result["runs"])
    return result


def check_same_runs(scratch: Path, ways: list[str], runs: int) -> None:
    """Every repetition is the same run in every way: its arrays equal, bit for bit."""
    import numpy as np

    from askdagger_mnist.data.rundir import read_arrays

    for rep in range(runs):
        first = read_arrays(run_dir(scratch, ways[0], rep))
        for way in ways[1:]:
            other = read_arrays(run_dir(scratch, way, rep))
            assert first.keys() == other.keys(), (rep, way)
            for name in first:
                assert np.array_equal(first[name], other[name]), (rep, way, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data" / "mnist",
                   help="folder holding MNIST/raw/*.gz")
    p.add_argument("--runs", type=int, default=8, help="training runs per way (N)")
    p.add_argument("--max-steps", type=int, help="steps per run (default: the whole stream)")
    p.add_argument("--engine", default="auto")
    p.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {list(WAYS)}")
    p.add_argument("--per-run", action="store_true", help="also each run's wall and CPU s")
    p.add_argument("--keep", type=Path, help="keep the runs and logs in this new folder")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all the ways")
    args = p.parse_args()
    ways = args.ways.split(",")
    if unknown := [w for w in ways if w not in {**WAYS, **SNAKEMAKE_WAYS}]:
        p.error(f"unknown ways {unknown}: choose from {[*WAYS, *SNAKEMAKE_WAYS]}")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"{args.runs} runs of {args.max_steps or 'all'} steps per way; cores this process may "
          f"use: {cores if cores is not None else 'unknown'}; load average at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="oversubscription-") as tmp:
        results: dict[str, list[dict]] = {way: [] for way in ways}
        for round_ in range(args.rounds):
            scratch = (args.keep or Path(tmp)) / f"round{round_}"
            for way in ways:
                r = measure(args, way, scratch)
                results[way].append(r)
                print(f"round {round_}  {way:16s} wall {r['wall_s']:7.1f} s   "
                      f"CPU {r['cpu_s']:7.1f} s", flush=True)
                if args.per_run:
                    for i, run in enumerate(r["runs"]):
                        print(f"    rep{i}: wall {run['wall_s']:6.1f} s   "
                              f"CPU {run['cpu_s']:6.1f} s")
            check_same_runs(scratch, ways, args.runs)
    if args.rounds > 1:
        for way in ways:
            print(f"median  {way:16s} "
                  f"wall {statistics.median(r['wall_s'] for r in results[way]):7.1f} s   "
                  f"CPU {statistics.median(r['cpu_s'] for r in results[way]):7.1f} s")
    print("every run is the same in every way and round (arrays bit for bit)")


if __name__ == "__main__":
    main()
