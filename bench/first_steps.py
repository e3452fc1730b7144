"""The first steps of our runs, from many starts, and the comparison with the original's
(docs/reproduction.md, "The success-mode gap at s_des 0.5").

    python bench/first_steps.py --mode success --s-des 0.5 --steps 40 --starts 24 \\
        [--theirs first_steps_theirs.csv] [--data-root resources/mnist]

Runs --starts runs of --steps steps (repetitions 100, 101, ...; fast engine, CPU, one thread)
and prints, for ours and, given --theirs (bench/original/first_steps.py's CSV), for the
original's: active queries a step over steps 1-5 and the novice's accuracy over steps 15-30 and
30-40, each as the mean over starts and the standard deviation of the per-start means.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from askdagger_mnist.algorithm.loop import run_loop
from askdagger_mnist.data.mnist import load_mnist_train
from askdagger_mnist.fast.engine import FAST
from askdagger_mnist.settings import MODES, RunSettings

REPO = Path(__file__).resolve().parents[1]
WINDOWS = {"active queries, steps 1-5": ("active_queries", 1, 6),
           "novice accuracy, steps 15-30": ("novice_accuracy", 15, 30),
           "novice accuracy, steps 30-40": ("novice_accuracy", 30, 40)}


def ours(mode: str, s_des: float, steps: int, starts: int, data_root: Path) -> pd.DataFrame:
    torch.set_num_threads(1)
    mnist = load_mnist_train(data_root)
    rows = []
    for start in range(starts):
        state, _ = run_loop(RunSettings(mode=mode, s_des=s_des, steps=steps, rep=100 + start),
                            *mnist, torch.device("cpu"), FAST)
        queries = state.arrays["q_a"].reshape(steps, -1).sum(1)
        accuracy = state.arrays["c"].reshape(steps, -1).mean(1)
        rows += [{"start": start, "step": t, "active_queries": int(queries[t]),
                  "novice_accuracy": float(accuracy[t])} for t in range(steps)]
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> dict[str, str]:
    out = {}
    for name, (column, first, stop) in WINDOWS.items():
        inside = table[(table["step"] >= first) & (table["step"] < stop)]
        if inside.empty:
            continue
        per_start = inside.groupby("start")[column].mean()
        out[name] = f"{per_start.mean():.3g} (sd {per_start.std(ddof=1):.2g}, {len(per_start)} starts)"
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="success", choices=MODES)
    p.add_argument("--s-des", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--starts", type=int, default=24)
    p.add_argument("--theirs", type=Path, help="bench/original/first_steps.py's CSV")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    args = p.parse_args()
    sides = {"ours": summary(ours(args.mode, args.s_des, args.steps, args.starts, args.data_root))}
    if args.theirs:
        sides["theirs"] = summary(pd.read_csv(args.theirs))
    print("| first steps | " + " | ".join(sides) + " |")
    print("|---|" + "---:|" * len(sides))
    for name in WINDOWS:
        print(f"| {name} | " + " | ".join(s.get(name, "") for s in sides.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
