"""Benchmark (a): one full default run (468 steps) on one thread: wall time and peak RSS.

    python bench/full_run.py [--repeat 5] [--mode sensitivity] [--threads 1] [--device cpu]
                             [--data-root ../shared/data/mnist]

Runs the train CLI in a child process (``--repeat`` times) and prints its wall time (process
start to exit), the loop time it recorded in run.json, CPU time and the peak resident set
size; with several runs, each one and the median.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(args, tmp: Path, i: int) -> dict:
    """One train CLI process; its wall time, loop time, CPU time, peak RSS and metrics."""
    out = tmp / f"run{i}"
    cmd = [sys.executable, "-m", "askdagger_mnist.train", "--mode", args.mode,
           "--s-des", args.s_des, "--data-root", args.data_root, "--out", str(out),
           "--threads", args.threads, "--device", args.device,
           "--progress-every", "100" if args.repeat == 1 else "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = json.loads((out / "run.json").read_text())
    return {
        "wall": wall, "loop": info["wall_time_s"], "info": info,
        "user": usage.ru_utime - before.ru_utime, "system": usage.ru_stime - before.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,  # the largest child so far
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="sensitivity")
    p.add_argument("--s-des", default="0.9")
    p.add_argument("--threads", default="1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs in a row (same seed); prints each and the median: timings on a "
                        "shared machine vary by 10-20%% from run to run")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "mnist"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(args, Path(tmp), i) for i in range(args.repeat)]
    info = runs[-1]["info"]
    m = info["metrics"]
    print(f"full run ({info['n_steps']} steps, {args.mode}, s_des {args.s_des}, "
          f"{info['threads']} thread(s), {info['device']})")
    for i, r in enumerate(runs):
        print(f"  run {i}: wall (process start to exit) {r['wall']:6.2f} s, loop {r['loop']:6.2f} s, "
              f"CPU {r['user'] + r['system']:6.2f} s (system {r['system']:.2f})")
    med = {key: statistics.median(r[key] for r in runs) for key in ("wall", "loop")}
    print(f"  wall time, process start to exit : {med['wall']:7.2f} s (median of {len(runs)}; "
          f"min {min(r['wall'] for r in runs):.2f})")
    print(f"  loop time (run.json wall_time_s)  : {med['loop']:7.2f} s (median)")
    print(f"  peak RSS                          : {max(r['rss_mb'] for r in runs):7.0f} MB")
    print(f"  sensitivity {m['sensitivity']:.3f}  specificity {m['specificity']:.3f}  "
          f"query rate {m['query_rate']:.3f}  novice acc {m['novice_success']:.3f}  "
          f"system success {m['system_success']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
