"""Benchmark: full default runs (468 steps) on one thread: wall time and peak RSS, per engine,
and the swap table (each fast component against its plain twin).

    python bench/full_run.py [--repeat 5] [--engine fast|plain] [--swap COMPONENT ...]
                             [--mode sensitivity] [--threads 1] [--device cpu]
    python bench/full_run.py --swap-table --repeat 5
    (--max-steps N: shorter runs, for a quick check that it works; not for the tables)

Runs the train CLI in a child process (``--repeat`` times) and prints its wall time (process
start to exit), the loop time it recorded in run.json, CPU time and the peak resident set
size; with several runs, each one and the median. ``--swap C`` runs the chosen engine with
component C in its *other* form (plain in the fast engine, fast in the plain engine);
``--swap-table`` measures the fast engine and the fast engine with each component swapped
to plain, one at a time, in interleaved rounds, and prints what each fast component saves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the checkout's package, as the child runs it
from askdagger_mnist.algorithm.engine import COMPONENTS  # noqa: E402


def child(argv: list[str]) -> None:
    """In the child process: swap the named components of the engine, then run the train CLI."""
    import dataclasses

    from askdagger_mnist.algorithm.engine import PLAIN
    from askdagger_mnist.cli import train
    from askdagger_mnist.fast.engine import FAST
    from askdagger_mnist.runner import engine_choice

    swaps, rest = [], []
    it = iter(argv)
    for arg in it:
        if arg == "--swap":
            swaps.append(next(it))
        else:
            rest.append(arg)
    name = rest[rest.index("--engine") + 1]
    other = PLAIN if name == "fast" else FAST
    by_name = engine_choice.ENGINE_BY_NAME
    by_name[name] = dataclasses.replace(by_name[name], **{c: getattr(other, c) for c in swaps})
    train.exit_now(train.main(rest))


def one_run(args, swaps: list[str], tmp: Path, i: int) -> dict:
    """One train CLI process; its wall time, loop time, CPU time, peak RSS and metrics."""
    # A folder per configuration: a run directory (or its kept copy) already there would be
    # restored, not trained, and the measurement would time a restore.
    out = tmp / ("+".join(swaps) or "as-chosen") / f"run{i}"
    if out.exists() or (out.parent / ".kept" / out.name).exists():
        raise SystemExit(f"{out} was made before: each measured run needs a folder of its own")
    cmd = [sys.executable, __file__, "--child", "--mode", args.mode, "--s-des", args.s_des,
           "--data-root", args.data_root, "--out", str(out), "--threads", args.threads,
           "--device", args.device, "--engine", args.engine,
           "--progress-every", "100" if args.repeat == 1 else "0"]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    for c in swaps:
        cmd += ["--swap", c]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = json.loads((out / "run.json").read_text())
    return {
        "wall": wall, "loop": info["wall_time_s"], "info": info,
        "user": usage.ru_utime - before.ru_utime, "system": usage.ru_stime - before.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,  # the largest child so far
    }


def measure(args, swaps: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(args, swaps, Path(tmp), i) for i in range(args.repeat)]
    return {"runs": runs, "wall": statistics.median(r["wall"] for r in runs),
            "loop": statistics.median(r["loop"] for r in runs),
            "rss": max(r["rss_mb"] for r in runs), "info": runs[-1]["info"]}


def report(args, swaps: list[str], res: dict) -> None:
    info, m = res["info"], res["info"]["metrics"]
    what = f"{args.engine} engine" + (f", swapped: {', '.join(swaps)}" if swaps else "")
    print(f"full run ({info['n_steps']} steps, {args.mode}, s_des {args.s_des}, "
          f"{info['threads']} thread(s), {info['device']}; {what})")
    for i, r in enumerate(res["runs"]):
        print(f"  run {i}: wall (process start to exit) {r['wall']:6.2f} s, loop {r['loop']:6.2f} s, "
              f"CPU {r['user'] + r['system']:6.2f} s (system {r['system']:.2f})")
    print(f"  wall time, process start to exit : {res['wall']:7.2f} s (median of {len(res['runs'])})")
    print(f"  loop time (run.json wall_time_s)  : {res['loop']:7.2f} s (median)")
    print(f"  peak RSS                          : {res['rss']:7.0f} MB")
    print(f"  sensitivity {m['sensitivity']:.3f}  specificity {m['specificity']:.3f}  "
          f"query rate {m['query_rate']:.3f}  novice acc {m['novice_success']:.3f}  "
          f"system success {m['system_success']:.3f}", flush=True)


def swap_table(args) -> None:
    """The fast engine, and the fast engine with each component swapped to its plain part, run
    in interleaved rounds (one run of each per round) so that a change of machine load
    touches every configuration alike; medians over the rounds."""
    args.engine = "fast"
    configs = [[]] + [[c] for c in args.components]
    walls = {tuple(c): [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            for c in configs:
                r = one_run(args, c, Path(tmp), i)
                walls[tuple(c)].append(r["wall"])
                print(f"round {i}: {'+'.join(c) or 'fast engine'}: {r['wall']:.2f} s "
                      f"(loop {r['loop']:.2f} s, peak RSS {r['rss_mb']:.0f} MB so far)", flush=True)
    base = statistics.median(walls[()])
    print(f"\nfast engine: median wall {base:.2f} s over {args.repeat} interleaved rounds")
    print("\n| component | fast engine with the plain part (s) | fast engine (s) | "
          "saved by the fast part | share of the fast run |")
    print("|---|---|---|---|---|")
    for c in args.components:
        plain_wall = statistics.median(walls[(c,)])
        saved = plain_wall - base
        print(f"| {c} | {plain_wall:.2f} | {base:.2f} | {saved:+.2f} s | "
              f"{100 * saved / base:+.1f}% |")


def main() -> int:
    if "--child" in sys.argv:
        child([a for a in sys.argv[1:] if a != "--child"])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="sensitivity")
    p.add_argument("--s-des", default="0.9")
    p.add_argument("--threads", default="1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--engine", default="fast", choices=("plain", "fast"))
    p.add_argument("--swap", action="append", default=[], choices=COMPONENTS)
    p.add_argument("--swap-table", action="store_true")
    p.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=COMPONENTS,
                   help="components the swap table swaps, one at a time (default: all)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs in a row (same seed); prints each and the median: timings on a "
                        "shared machine vary by 10-20%% from run to run")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "mnist"))
    p.add_argument("--max-steps", type=int, help="steps per run (default: the whole stream)")
    args = p.parse_args()
    if args.swap_table:
        swap_table(args)
    else:
        report(args, args.swap, measure(args, args.swap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
