"""Pack runs of the original code into the authors' zip layout, and list their whole-run metrics.

    python bench/original/pack.py WORKDIR [WORKDIR ...] --zip-dir DIR --csv FILE

WORKDIR: a folder holding ``results_{mode}/r..._s..._u..._i..._b..._e.../{rep}/results.npy``
trees (bench/original/run_original.py writes them; ../shared/reference holds the same layout).
For each mode it writes ``DIR/results_{mode}.zip`` with exactly the published archives' member
names (``results_{mode}/r.../{rep}/results.npy`` and the model ``.pt``), ready for a
``results_archives`` entry with ``url: file:///.../results_{mode}.zip`` and ``compare_with``.
A run found in two WORKDIRs is taken from the first.

The CSV has one row per run: source, mode, s_des, p_rand, rep, steps, each whole-run metric
of ``algorithm.metrics.whole_run_metrics`` (no arrays), ``spaced`` (the repetition is a
multiple of 10: such runs share no per-step seed, see run_original.py) and ``made_by`` (from
WORKDIR/runs.jsonl when run_original.py made the run: torch version, threads, seconds). ``results.npy`` is a pickle and is read
only through the restricted reader the workflow uses (``prebuilt.authors_pickle``).
Runs in our environment, not the original's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.analysis.sides import VERDICT_METRICS
from askdagger_mnist.prebuilt.authors_format import parse_run_dirname
from askdagger_mnist.prebuilt.authors_pickle import load_results_npy
from askdagger_mnist.settings import MODES

COLUMNS = ("source", "mode", "s_des", "p_rand", "normalization", "imputation", "rep", "steps",
           *VERDICT_METRICS, "spaced", "made_by")


def find_runs(workdirs: list[Path]) -> dict[tuple[str, str, int], Path]:
    """(mode, configuration folder name, rep) -> the folder holding its results.npy."""
    runs: dict[tuple[str, str, int], Path] = {}
    for work in workdirs:
        for mode in MODES:
            for npy in sorted((work / f"results_{mode}").glob("*/*/results.npy")):
                rep_dir = npy.parent
                if parse_run_dirname(rep_dir.parent.name) and rep_dir.name.isdigit():
                    runs.setdefault((mode, rep_dir.parent.name, int(rep_dir.name)), rep_dir)
    return runs


def made_by(rep_dir: Path, mode: str, config: str, rep: int) -> str:
    """How a run was made, from run_original.py's runs.jsonl beside its tree, if it is there."""
    log = rep_dir.parents[2] / "runs.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            made = json.loads(line)
            if (made["mode"], made["config"], made["rep"]) == (mode, config, rep):
                return (f"run_original.py, torch {made['versions'].get('torch')}, "
                        f"{made['threads']} thread(s), {made['seconds']:.0f} s")
    return f"as found in {rep_dir.parents[2].name}"


def metrics_row(source: str, mode: str, config: str, rep: int, rep_dir: Path) -> dict:
    settings = parse_run_dirname(config)
    arrays = load_results_npy(rep_dir / "results.npy")
    c, q = np.asarray(arrays["c"]), np.asarray(arrays["q"])
    m = whole_run_metrics(c, q)
    return {"source": source, "mode": mode, "s_des": settings["s_des"], "p_rand": settings["p_rand"],
            "normalization": settings["normalization"], "imputation": settings["imputation"],
            "rep": rep, "steps": len(c) // settings["batch_size"],
            **{k: round(m[k], 6) for k in VERDICT_METRICS}, "spaced": rep % 10 == 0,
            "made_by": made_by(rep_dir, mode, config, rep)}


def write_zip(path: Path, members: list[tuple[str, Path]]) -> None:
    part = path.with_name(path.name + ".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
        for name, file in members:
            z.write(file, name)
    os.replace(part, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdirs", type=Path, nargs="+")
    p.add_argument("--zip-dir", type=Path)
    p.add_argument("--csv", type=Path)
    p.add_argument("--source", default="original", help="the CSV's source column")
    p.add_argument("--reps", type=int, nargs="+", help="only these repetitions (e.g. 0 10 20 ... 90)")
    args = p.parse_args(argv)
    runs = find_runs(args.workdirs)
    if args.reps is not None:
        runs = {key: path for key, path in runs.items() if key[2] in args.reps}
    if not runs:
        sys.exit(f"error: no results_{{mode}}/<configuration>/<rep>/results.npy under {', '.join(map(str, args.workdirs))}.")
    if args.zip_dir:
        args.zip_dir.mkdir(parents=True, exist_ok=True)
        for mode in MODES:
            members = [(f"results_{mode}/{config}/{rep}/{f.name}", f)
                       for (m, config, rep), rep_dir in sorted(runs.items()) if m == mode
                       for f in sorted(rep_dir.iterdir()) if f.suffix in (".npy", ".pt")]
            if members:
                write_zip(args.zip_dir / f"results_{mode}.zip", members)
                print(f"{args.zip_dir / f'results_{mode}.zip'}: {len(members)} files")
    if args.csv:
        rows = [metrics_row(args.source, mode, config, rep, rep_dir)
                for (mode, config, rep), rep_dir in sorted(runs.items())]
        part = args.csv.with_name(args.csv.name + ".part")
        with open(part, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)
        os.replace(part, args.csv)
        print(f"{args.csv}: {len(rows)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
