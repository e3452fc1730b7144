"""Benchmark: how often the reproduction verdict is wrong, measured on real runs.

    python bench/calibrate_verdict.py --runs DIR [DIR ...] --csv FILE [FILE ...] \\
        [--shift SOURCE:MODE:S_DES_A:S_DES_B ...] [--draws 2000] [--out-csv FILE]

Pools: the runs of one configuration of one source (ours: run directories under --runs;
the original code: CSVs of whole-run metrics as bench/original/pack.py writes them) with at
least --min-pool runs. For n = 2 ... 12 it draws, --draws times, two samples of n runs from one
pool (with replacement: two samples of the pool's distribution, where nothing differs) and asks
the verdict (``analysis.verdict.judge`` at the configured margins) about them, once with
Welch's interval (the verdict's) and once with the percentile bootstrap (its predecessor):

* ``P(different | same)``: the false-positive rate; it must be at most 5% wherever the verdict
  may say ``different``. Reported at the configured margins and at margin 0 (where
  ``different`` means "the interval excludes 0", the interval's own error rate).
* With --shift, two samples of n from two configurations of one source (e.g. sensitivity at
  s_des 0.9 and 0.88, whose query rates differ by about 0.03): ``P(equivalent | shift)`` and
  ``P(different | shift)`` (the power).

Prints Markdown tables (docs/reproduction.md has them) and, per method, the largest
false-positive rate at each n over pools and metrics, and the smallest n from which every rate
at the configured margins is at most 5%: for Welch's interval, the lowest value the verdict's
``min_runs`` may take (settings.MIN_RUNS_CALIBRATED, which also weighs the power).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from askdagger_mnist.analysis.intervals import percentile_bootstrap_interval, welch_interval
from askdagger_mnist.analysis.sides import VERDICT_METRICS, read_side, whole_run_values
from askdagger_mnist.analysis.verdict import VerdictSettings, judge
from askdagger_mnist.data.rundir import is_complete_run
from askdagger_mnist.settings import TRACKED

KEY = ("source", "mode", "s_des")
SIZES = range(2, 13)
FP_LIMIT = 0.05


def our_runs_table(folders: list[Path]) -> pd.DataFrame:
    """Whole-run metrics of every complete run directory under ``folders`` (source "ours")."""
    dirs = sorted({p.parent for f in folders for p in Path(f).rglob("run.json")
                   if is_complete_run(p.parent)})
    side = read_side("ours", dirs)
    rows = []
    for config, runs in side.runs.items():
        values = whole_run_values(runs, min(r.n_steps for r in runs))
        for i, run in enumerate(runs):
            rows.append({"source": "ours", "mode": config[0], "s_des": config[4], "rep": run.rep,
                         **{m: values[m][i] for m in VERDICT_METRICS}})
    return pd.DataFrame(rows)


def intervals(method: str, x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    if method == "welch":
        return welch_interval(x, y)
    return percentile_bootstrap_interval(x, y, 1000, rng)


def rates(a: np.ndarray, b: np.ndarray, n: int, draws: int, margins: dict[str, float],
          method: str, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Shares of verdicts over ``draws`` pairs of samples of n, from ``a`` and from ``b``
    (the same pool for the false-positive rate), at each of ``margins`` (label -> margin; one
    interval per draw serves them all)."""
    counts = {label: {"equivalent": 0, "different": 0, "inconclusive": 0} for label in margins}
    for _ in range(draws):
        x, y = rng.choice(a, n), rng.choice(b, n)
        lo, hi = intervals(method, x, y, rng)
        for label, margin in margins.items():
            counts[label][judge(lo, hi, margin, n, n, 2)[0]] += 1
    return {label: {k: v / draws for k, v in c.items()} for label, c in counts.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="folders of our run directories")
    p.add_argument("--csv", type=Path, nargs="*", default=[], help="CSVs of bench/original/pack.py")
    p.add_argument("--shift", nargs="*", default=[], metavar="SOURCE:MODE:S_A:S_B")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--min-pool", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-csv", type=Path)
    args = p.parse_args(argv)
    # The original's runs: only repetitions 10 apart (column "spaced"), which share no seed.
    csvs = [t[t["spaced"]] if "spaced" in t else t for t in map(pd.read_csv, args.csv)]
    table = pd.concat([our_runs_table(args.runs) if args.runs else pd.DataFrame(), *csvs],
                      ignore_index=True)
    settings = VerdictSettings.from_config()
    rng = np.random.default_rng(args.seed)
    rows = []
    pools = [(key, g) for key, g in table.groupby(list(KEY)) if len(g) >= args.min_pool]
    if not pools:
        sys.exit(f"error: no configuration has {args.min_pool} runs or more.")
    for (source, mode, s_des), g in pools:
        for metric in (TRACKED[mode], "query_rate"):
            v = g[metric].to_numpy(float)
            for n in SIZES:
                for method in ("welch", "percentile"):
                    margins = {"configured": settings.margin(mode, metric), "0": 0.0}
                    for label, r in rates(v, v, n, args.draws, margins, method, rng).items():
                        rows.append({"kind": "same", "pool": f"{source} {mode} s{s_des:g}",
                                     "pool_size": len(v), "metric": metric, "n": n, "method": method,
                                     "margin": label, **r})
    for spec in args.shift:
        source, mode, sa, sb = spec.split(":")
        ga = table[(table["source"] == source) & (table["mode"] == mode) & np.isclose(table["s_des"], float(sa))]
        gb = table[(table["source"] == source) & (table["mode"] == mode) & np.isclose(table["s_des"], float(sb))]
        for metric in (TRACKED[mode], "query_rate"):
            a, b = ga[metric].to_numpy(float), gb[metric].to_numpy(float)
            for n in SIZES:
                for method in ("welch", "percentile"):
                    r = rates(a, b, n, args.draws, {"c": settings.margin(mode, metric)}, method, rng)["c"]
                    rows.append({"kind": "shift", "pool": f"{source} {mode} s{sa} vs s{sb}",
                                 "pool_size": min(len(a), len(b)), "metric": metric, "n": n,
                                 "method": method, "margin": "configured",
                                 "shift": float(a.mean() - b.mean()), **r})
    out = pd.DataFrame(rows)
    if args.out_csv:
        out.to_csv(args.out_csv, index=False)
    se = math.sqrt(FP_LIMIT * (1 - FP_LIMIT) / args.draws)
    print(f"# Calibration of the reproduction verdict ({args.draws} draws a cell; "
          f"Monte-Carlo standard error at 5%: {se:.3f})\n")
    same = out[out["kind"] == "same"]
    for margin in ("configured", "0"):
        t = same[same["margin"] == margin].pivot_table(index=["pool", "pool_size", "metric", "method"],
                                                       columns="n", values="different")
        print(f"## P(different | same pool), margin {margin}\n")
        print(t.to_markdown(floatfmt=".3f"), "\n")
    shift = out[out["kind"] == "shift"]
    if len(shift):
        for what in ("equivalent", "different"):
            t = shift.pivot_table(index=["pool", "metric", "shift", "method"], columns="n", values=what)
            print(f"## P({what} | shift), configured margins\n")
            print(t.to_markdown(floatfmt=".3f"), "\n")
    # The floor: the smallest n from which every rate at the configured margins is at most 5%.
    # At margin 0 (any difference at all) "different" means "the interval excludes 0", whose
    # rate is the interval's own nominal 5%: shown for what it says about the interval.
    for method in ("welch", "percentile"):
        for margin in ("configured", "0"):
            worst = same[(same["method"] == method) & (same["margin"] == margin)].groupby("n")["different"].max()
            print(f"{method}, margin {margin}, largest false-positive rate over pools and metrics: "
                  + ", ".join(f"n={n}: {v:.3f}" for n, v in worst.items()))
            if margin == "configured":
                ok = [n for n in SIZES if (worst[worst.index >= n] <= FP_LIMIT).all()]
                print(f"{method}: smallest n from which every rate at the configured margins is "
                      f"<= {FP_LIMIT}: {ok[0] if ok else 'none up to 12'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
