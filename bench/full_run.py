"""Benchmark (a): one full default run (468 steps) on one thread: wall time and peak RSS.

    python bench/full_run.py [--mode sensitivity] [--threads 1] [--data-root ../shared/data/mnist]

Runs the train CLI in a child process and prints its wall time (process start to exit), the
loop time it recorded in run.json, and the child's peak resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="sensitivity")
    p.add_argument("--s-des", default="0.9")
    p.add_argument("--threads", default="1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "mnist"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "askdagger_mnist.train", "--mode", args.mode,
               "--s-des", args.s_des, "--data-root", args.data_root, "--out", str(out),
               "--threads", args.threads, "--device", args.device, "--progress-every", "100"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss_mb = usage.ru_maxrss / 1024
        info = json.loads((out / "run.json").read_text())
    m = info["metrics"]
    print(f"full run ({info['n_steps']} steps, {args.mode}, s_des {args.s_des}, "
          f"{info['threads']} thread(s), {info['device']})")
    print(f"  wall time, process start to exit : {wall:7.2f} s")
    print(f"  loop time (run.json wall_time_s)  : {info['wall_time_s']:7.2f} s")
    print(f"  CPU time (user + system)          : {usage.ru_utime + usage.ru_stime:7.2f} s"
          f"  (user {usage.ru_utime:.2f}, system {usage.ru_stime:.2f}; less sensitive to a busy machine)")
    print(f"  peak RSS                          : {rss_mb:7.0f} MB")
    print(f"  sensitivity {m['sensitivity']:.3f}  specificity {m['specificity']:.3f}  "
          f"query rate {m['query_rate']:.3f}  novice acc {m['novice_success']:.3f}  "
          f"system success {m['system_success']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
