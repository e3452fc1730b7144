"""Benchmark: more training jobs than cores, as `snakemake --cores 8` starts them on a smaller
machine. N full runs of the train CLI (real MNIST), each a process of its own, in three ways:

    all-unpinned   all N at once, without CPU core slots (--no-cpu-slots): the cores time-shared
    all-slots      all N at once, with CPU core slots (the default): at most one job per core
                   trains, the others wait asleep (runner/cpu_slots.py)
    two-unpinned   two at a time (the next starts when one ends), without slots

    python bench/oversubscription.py [--data-root DIR] [--runs 8] [--max-steps N]
                                     [--ways all-unpinned,all-slots,two-unpinned] [--per-run]

For each way: the wall time from the first start to the last exit, and the CPU time of all its
processes (user + system, from each child's rusage: os.wait4), with each run's own on
``--per-run``. The runs of each way are repetitions 0..N-1 of sensitivity, s_des 0.9, in a
scratch folder; the CPU core slots of the runs live in that folder too (TMPDIR), so other jobs
of the machine neither wait for them nor hold them up. At the end, every run is checked to be
the same run in every way (its arrays, bit for bit). Measure on a quiet machine: other load
makes both the time-sharing and the waiting look different.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the checkout's package, as the children run it
WAYS = {"all-unpinned": ("all", "--no-cpu-slots"), "all-slots": ("all", "--cpu-slots"),
        "two-unpinned": (2, "--no-cpu-slots")}


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


def measure(args, way: str, scratch: Path) -> dict:
    at_once, slots_flag = WAYS[way]
    folder = scratch / way
    (folder / "tmp").mkdir(parents=True)
    (folder / "logs").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TMPDIR": str(folder / "tmp")}
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
        first = read_arrays(scratch / ways[0] / f"rep{rep}")
        for way in ways[1:]:
            other = read_arrays(scratch / way / f"rep{rep}")
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
    args = p.parse_args()
    ways = args.ways.split(",")
    if unknown := [w for w in ways if w not in WAYS]:
        p.error(f"unknown ways {unknown}: choose from {list(WAYS)}")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"{args.runs} runs of {args.max_steps or 'all'} steps per way; cores this process may "
          f"use: {cores if cores is not None else 'unknown'}; load average at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="oversubscription-") as tmp:
        scratch = args.keep or Path(tmp)
        for way in ways:
            r = measure(args, way, scratch)
            print(f"{way:14s} wall {r['wall_s']:7.1f} s   CPU {r['cpu_s']:7.1f} s", flush=True)
            if args.per_run:
                for i, run in enumerate(r["runs"]):
                    print(f"    rep{i}: wall {run['wall_s']:6.1f} s   CPU {run['cpu_s']:6.1f} s")
        check_same_runs(scratch, ways, args.runs)
    print("every run is the same in every way (arrays bit for bit)")


if __name__ == "__main__":
    main()
