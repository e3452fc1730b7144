"""The first steps of the authors' original train(), from many fresh starts: active queries and
novice accuracy per step (docs/reproduction.md, "The success-mode gap at s_des 0.5").

    ORIG=~/.cache/askdagger-mnist/original-venv/bin/python
    $ORIG bench/original/first_steps.py --source PATH/TO/askdagger_mnist \\
        --mnist-raw PATH/TO/MNIST/raw --work WORKDIR --mode success --s-des 0.5 \\
        --steps 40 --starts 24 --out first_steps_theirs.csv

Their code is unedited: in this process their ``sample``, ``evaluate`` and ``sag`` are wrapped
to read each step's labels, predictions, u and gamma, and the run is stopped after --steps SAG
calls. Start i runs repetition 10 i (no shared per-step seeds) and first seeds torch with a
number of its own: their train() draws the initial model before it seeds anything, from
whatever state torch's generator is in (a fresh process: torch's default seed, the same model
every time), so without it every start would share one initial model. Writes one CSV row per
start and step (start, rep, step, active_queries, novice_accuracy). Never imports ours.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_original import Stop, enter_original, original_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    original_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", default="success", choices=("sensitivity", "specificity", "success"))
    p.add_argument("--s-des", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--starts", type=int, default=24)
    args = p.parse_args(argv)
    out = args.out.resolve()
    enter_original(args.source, args.mnist_raw, args.work)

    import torch

    torch.set_num_threads(1)
    import askdagger_mnist.train as their_train  # theirs, from --source

    step: dict = {}
    rows: list[dict] = []
    real_sample, real_evaluate, real_sag = their_train.sample, their_train.evaluate, their_train.sag

    def sample(*a):
        drawn = real_sample(*a)
        step["labels"] = drawn[1]
        return drawn

    def evaluate(samples, routine):
        u, prediction = real_evaluate(samples, routine)
        step["u"], step["accuracy"] = u, float(np.mean(prediction == step["labels"]))
        return u, prediction

    def sag(u, r, k, **kwargs):
        gamma = real_sag(u, r, k, **kwargs)
        rows.append({"start": step["start"], "rep": step["rep"], "step": step["t"],
                     "active_queries": int(np.sum(step["u"] >= gamma)),
                     "novice_accuracy": step["accuracy"]})
        step["t"] += 1
        if step["t"] >= args.steps:
            raise Stop
        return gamma

    their_train.sample, their_train.evaluate, their_train.sag = sample, evaluate, sag
    for start in range(args.starts):
        step.update(start=start, rep=10 * start, t=0)
        torch.manual_seed(1_000_003 * (start + 1))  # a fresh initial model per start
        try:
            their_train.train(iteration=10 * start, mode=args.mode, s_des=args.s_des,
                              accelerator="cpu", log=False, verbose=False, save=False)
        except Stop:
            pass
        print(f"start {start} done", flush=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, ["start", "rep", "step", "active_queries", "novice_accuracy"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
