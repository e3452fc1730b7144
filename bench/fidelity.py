"""Benchmark (c): fidelity to the authors' code, as a reproduction verdict.

    python bench/fidelity.py [--configs MODE:S_DES[:VARIANT] ...] [--reps 10] [--engine fast|plain]
        [--jobs 2] [--keep DIR] [--reference FOLDER ...] [--theirs-csv bench/original/original_runs.csv]
        [--theirs-precision medium|highest]

Trains --reps runs of ours for each configuration (default: the three modes at s_des 0.9, the
paper's SAG; VARIANT is a name of the config's default variants: sag, no_normalization,
no_imputation, prand0.05, prand0.2), imports the runs of the original code found in the
--reference folders (the authors' layout, as bench/original/run_original.py writes it; read
with the restricted unpickler), and compares the two sides with the workflow's own code
(analysis.sides, analysis.verdict; docs/reproduction.md). A configuration for which the
references hold no runs is compared with the whole-run metrics of the original's spaced runs
in --theirs-csv, where given (no curve gap then). Prints the verdict table in Markdown; exits 1
when a tracked metric is "different".
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from askdagger_mnist.analysis.sides import (CONFIG_COLUMNS, VERDICT_METRICS, Side, common_steps,
                                            read_side, run_dirs_under, whole_run_values)
from askdagger_mnist.analysis.verdict import (VERDICT_COLUMNS, VerdictSettings, compare_sides,
                                              to_markdown, verdict_of)
from askdagger_mnist.prebuilt.authors_format import import_tree
from askdagger_mnist.settings import MODES, PAPER_VARIANTS, TRACKED

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def train(config: tuple[str, float, str], rep: int, out: Path, data_root: str, engine: str) -> Path:
    mode, s_des, variant = config
    if not (out / "run.json").is_file():
        v = PAPER_VARIANTS[variant]
        flags = ["--p-rand", str(v["p_rand"])] + ["--no-normalization"] * (not v["normalization"]) \
            + ["--no-imputation"] * (not v["imputation"])
        cmd = [sys.executable, "-m", "askdagger_mnist.cli.train", "--mode", mode, "--s-des",
               str(s_des), "--rep", str(rep), "--variant", variant, *flags, "--data-root", data_root,
               "--out", str(out), "--threads", "1", "--device", "cpu", "--progress-every", "0",
               "--engine", engine]
        subprocess.run(cmd, check=True)
    return out


def parse_config(text: str) -> tuple[str, float, str]:
    mode, s_des, *variant = text.split(":")
    if mode not in MODES or len(variant) > 1 or (variant and variant[0] not in PAPER_VARIANTS):
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODE:S_DES[:VARIANT], VARIANT one of "
                                         f"{', '.join(PAPER_VARIANTS)}")
    return mode, float(s_des), variant[0] if variant else "sag"


def csv_verdicts(ours: Side, csv_path: Path, settings: VerdictSettings,
                 configs: list[tuple], precision: str = "medium") -> pd.DataFrame:
    """Verdict rows for ``configs`` (configurations of ours) against the whole-run metrics of
    the original's spaced runs listed in ``csv_path`` made at the float32 matmul ``precision``
    (medium: as their train.py sets it) (no arrays: no curve gap)."""
    table = pd.read_csv(csv_path)
    table = table[table["spaced"] & (table["source"] == "original")
                  & (table["matmul_precision"] == precision)]
    rows = []
    for config in configs:
        runs = ours.runs[config]
        named = dict(zip(CONFIG_COLUMNS, config))
        theirs = table[(table["mode"] == named["mode"]) & np.isclose(table["s_des"], named["s_des"])
                       & np.isclose(table["p_rand"], named["p_rand"])
                       & (table["normalization"] == named["normalization"])
                       & (table["imputation"] == named["imputation"])]
        if theirs.empty:
            continue
        steps = common_steps(runs)
        values = whole_run_values(runs, steps)
        for metric in VERDICT_METRICS:
            x, y = values[metric], theirs[metric].to_numpy(float)
            margin = settings.margin(named["mode"], metric)
            verdict, reason, lo, hi = verdict_of(x, y, margin, settings.min_runs)
            rows.append({**named, "variant": runs[0].variant, "metric": metric,
                         "tracked": TRACKED[named["mode"]] == metric, "steps": steps,
                         "n_ours": len(x), "n_theirs": len(y), "mean_ours": float(x.mean()),
                         "std_ours": float(np.std(x, ddof=1)), "mean_theirs": float(y.mean()),
                         "std_theirs": float(np.std(y, ddof=1)), "diff": float(x.mean() - y.mean()),
                         "ci_low": lo, "ci_high": hi, "margin": margin, "verdict": verdict,
                         "reason": reason, "max_curve_diff": float("nan")})
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def import_reference(folders: list[Path], work: Path) -> list[Path]:
    """The reference runs, imported as the workflow imports an authors' archive."""
    runs = []
    for folder in folders:
        # One staging folder per reference folder (named by its path), so that a kept work
        # folder reused with other --reference folders never serves the runs of the old ones.
        staging = work / f"reference-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]}"
        if not staging.exists():
            staging.mkdir(parents=True)
            import_tree(folder, staging, PAPER_VARIANTS, {"url": str(folder)}, with_model=False)
        runs += run_dirs_under(staging)
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", type=parse_config, nargs="+",
                   default=[(mode, 0.9, "sag") for mode in MODES], help="MODE:S_DES[:VARIANT]")
    p.add_argument("--reps", type=int, default=10, help="our runs per configuration")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--engine", default="fast", choices=("fast", "plain"))
    p.add_argument("--keep", type=Path, help="keep (and reuse) the run directories here")
    p.add_argument("--data-root", default=str(SHARED / "data" / "mnist"))
    p.add_argument("--reference", type=Path, nargs="+",
                   default=[SHARED / "reference" / "original_results",
                            SHARED / "reference" / "extra_original_results"])
    p.add_argument("--theirs-csv", type=Path, help="whole-run metrics of the original's runs "
                   "(bench/original/original_runs.csv) for configurations the references lack")
    p.add_argument("--theirs-precision", default="medium", choices=("medium", "highest"),
                   help="the rows of --theirs-csv made at this float32 matmul precision (medium: "
                        "their train.py's; highest: run_original.py --matmul-precision highest)")
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="fidelity-"))
    theirs = read_side("the original code", import_reference(args.reference, work))
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train, config, rep,
                               work / args.engine / f"{config[0]}_s{config[1]:g}_{config[2]}_rep{rep}",
                               args.data_root, args.engine)
                   for config in args.configs for rep in range(args.reps)]
        ours = read_side(f"ours ({args.engine} engine)", [f.result() for f in futures])
    settings = VerdictSettings.from_config()
    for config in list(theirs.runs):  # only what was asked for
        if config not in ours.runs:
            del theirs.runs[config]
    table = compare_sides(ours, theirs, settings)
    if args.theirs_csv:
        lacking = [config for config in ours.runs if config not in theirs.runs]
        by_csv = csv_verdicts(ours, args.theirs_csv, settings, lacking, args.theirs_precision)
        compared = {tuple(row) for row in by_csv[list(CONFIG_COLUMNS)].itertuples(index=False)}
        table = pd.concat([table[~table[list(CONFIG_COLUMNS)].apply(tuple, axis=1).isin(compared)
                                 | (table["verdict"] != "unmatched")], by_csv], ignore_index=True)
    table["steps"] = table["steps"].astype("Int64")  # a concat of frames with NaN rows made it float
    print(to_markdown(table, ours.label, theirs.label, settings))
    print(f"runs in {work}")
    tracked = table[table["tracked"] == True]  # noqa: E712
    return 1 if (tracked["verdict"] == "different").any() else 0


if __name__ == "__main__":
    sys.exit(main())
