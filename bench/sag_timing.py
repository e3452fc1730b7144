"""Benchmark (b): time of one SAG call at window sizes 1k, 10k and 60k samples, plain
(``algorithm.sag``) and fast (``fast.sag``).

    python bench/sag_timing.py [--repeats 20]

Each window is a synthetic late-run history whose whole length is the window (n_min is set
so that the smallest valid window is everything), in all three modes, with normalization
and imputation on (n_rep = 10), the default configuration.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from askdagger_mnist.algorithm.sag import SagConfig, sag_details, sag_threshold
from askdagger_mnist.fast.sag import sag_threshold_fast


def history(n: int, seed: int = 0, batch: int = 128, update_every: int = 5):
    g = np.random.default_rng(seed)
    step = np.arange(n) // batch
    k = np.maximum(0, (step - 1) // update_every)
    fail = g.random(n) < 0.25
    u = np.clip(0.2 + 0.4 * fail + 0.15 * g.standard_normal(n), 0, 1)
    q = g.random(n) < 0.5
    r = np.where(q, np.where(fail, -1, 1), 0).astype(np.int8)
    r[-batch:] = 0
    return u, r, k


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    print(f"{'mode':<12} {'window':>7} {'plain median ms':>16} {'fast median ms':>15}")
    for mode in ("sensitivity", "specificity", "success"):
        for n in (1_000, 10_000, 60_000):
            u, r, k = history(n)
            relevant = 1 if mode == "specificity" else -1
            cfg = SagConfig(mode, 0.9, 0.1, True, True, n_min=int(np.sum(r == relevant)), n_rep=10)
            rng = np.random.default_rng(0)
            d = sag_details(u, r, k, cfg, rng)
            assert not d.fallback and d.window_start == 0 and len(d.u_norm) == n
            medians = []
            for sag in (sag_threshold, sag_threshold_fast):
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    sag(u, r, k, cfg, rng)
                    times.append(time.perf_counter() - t)
                medians.append(1000 * np.median(times))
            print(f"{mode:<12} {n:>7} {medians[0]:>16.2f} {medians[1]:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
