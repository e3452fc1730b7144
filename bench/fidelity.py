"""Benchmark (c): fidelity to the authors' code on the six reference configurations.

    python bench/fidelity.py [--engine fast|plain] [--jobs 2] [--keep DIR]

Trains 3 modes x s_des 0.9 x reps 0-1 with the default settings and prints our whole-run
metrics beside those of ../shared/reference/original_results/ (read with the restricted
unpickler; their seeds differ from ours, so runs are compared with the reference mean).
Targets: tracked metric within +-0.02, query rate and novice accuracy within +-0.05.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.prebuilt.authors_format import find_runs
from askdagger_mnist.prebuilt.authors_pickle import load_results_npy
from askdagger_mnist.settings import TRACKED

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COLUMNS = ("sensitivity", "specificity", "query_rate", "novice_success", "system_success")


def train(mode: str, rep: int, out: Path, data_root: str, engine: str) -> dict:
    cmd = [sys.executable, "-m", "askdagger_mnist.cli.train", "--mode", mode, "--s-des", "0.9",
           "--rep", str(rep), "--data-root", data_root, "--out", str(out), "--threads", "1",
           "--device", "cpu", "--progress-every", "0", "--engine", engine]
    subprocess.run(cmd, check=True)
    return json.loads((out / "run.json").read_text())


def reference_metrics(root: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for run in find_runs(root):
        d = load_results_npy(run.results)
        out[(run.mode, run.rep)] = whole_run_metrics(np.asarray(d["c"]), np.asarray(d["q"]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--engine", default="fast", choices=("fast", "plain"))
    p.add_argument("--keep", type=Path, help="keep the run directories here")
    p.add_argument("--data-root", default=str(SHARED / "data" / "mnist"))
    p.add_argument("--reference", type=Path, default=SHARED / "reference" / "original_results")
    args = p.parse_args()
    ref = reference_metrics(args.reference)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fidelity-"))
    configs = [(mode, rep) for mode in TRACKED for rep in (0, 1)]
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = {c: pool.submit(train, *c, work / f"{c[0]}_rep{c[1]}", args.data_root,
                                  args.engine) for c in configs}
        ours = {c: f.result() for c, f in futures.items()}
    head = f"{'mode':<12}{'rep':>4} {'who':<6}" + "".join(f"{c[:12]:>13}" for c in COLUMNS) + f"{'time s':>9}"
    print(head)
    failures = 0
    for mode in TRACKED:
        for rep in (0, 1):
            m = ours[(mode, rep)]["metrics"]
            print(f"{mode:<12}{rep:>4} {'ours':<6}" + "".join(f"{m[c]:>13.3f}" for c in COLUMNS)
                  + f"{ours[(mode, rep)]['wall_time_s']:>9.1f}")
            r = ref[(mode, rep)]
            print(f"{'':<12}{'':>4} {'theirs':<6}" + "".join(f"{r[c]:>13.3f}" for c in COLUMNS))
        ref_mean = {c: np.mean([ref[(mode, rep)][c] for rep in (0, 1)]) for c in COLUMNS}
        for rep in (0, 1):
            m = ours[(mode, rep)]["metrics"]
            tol = {TRACKED[mode]: 0.02, "query_rate": 0.05, "novice_success": 0.05}
            for col, t in tol.items():
                diff = m[col] - ref_mean[col]
                ok = abs(diff) <= t
                failures += not ok
                print(f"  check {mode} rep {rep} {col}: ours {m[col]:.3f} vs reference mean "
                      f"{ref_mean[col]:.3f} (diff {diff:+.3f}, tolerance {t}) {'ok' if ok else 'OUT'}")
    print(f"{failures} check(s) outside tolerance ({args.engine} engine); runs in {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
