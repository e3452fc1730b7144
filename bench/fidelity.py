"""Benchmark (c): fidelity to the authors' code, as a reproduction verdict.

    python bench/fidelity.py [--reps 10] [--engine fast|plain] [--jobs 2] [--keep DIR]

Trains --reps runs per mode (sensitivity, specificity, success) at s_des 0.9 with the
default settings, imports the reference runs of the original code (the authors' layout,
read with the restricted unpickler) from the --reference folders, and compares the two sides
with the workflow's own code (analysis.sides, analysis.verdict; docs/reproduction.md). Prints
the verdict table in Markdown; exits 1 when a tracked metric is "different".
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import subprocess
import sys
import tempfile
from pathlib import Path

from askdagger_mnist.analysis.sides import read_side, run_dirs_under
from askdagger_mnist.analysis.verdict import VerdictSettings, compare_sides, to_markdown
from askdagger_mnist.prebuilt.authors_format import import_tree
from askdagger_mnist.settings import MODES, PAPER_VARIANTS

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAG = {"sag": PAPER_VARIANTS["sag"]}  # the paper's SAG, as the import names it


def train(mode: str, rep: int, out: Path, data_root: str, engine: str) -> Path:
    if not (out / "run.json").is_file():
        cmd = [sys.executable, "-m", "askdagger_mnist.cli.train", "--mode", mode, "--s-des",
               "0.9", "--rep", str(rep), "--data-root", data_root, "--out", str(out),
               "--threads", "1", "--device", "cpu", "--progress-every", "0", "--engine", engine]
        subprocess.run(cmd, check=True)
    return out


def import_reference(folders: list[Path], work: Path) -> list[Path]:
    """The reference runs, imported as the workflow imports an authors' archive."""
    runs = []
    for i, folder in enumerate(folders):
        staging = work / f"reference{i}"
        if not staging.exists():
            staging.mkdir(parents=True)
            import_tree(folder, staging, SAG, {"url": str(folder)}, with_model=False)
        runs += run_dirs_under(staging)
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=10, help="our runs per mode")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--engine", default="fast", choices=("fast", "plain"))
    p.add_argument("--keep", type=Path, help="keep (and reuse) the run directories here")
    p.add_argument("--data-root", default=str(SHARED / "data" / "mnist"))
    p.add_argument("--reference", type=Path, nargs="+",
                   default=[SHARED / "reference" / "original_results",
                            SHARED / "reference" / "extra_original_results"])
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="fidelity-"))
    theirs = read_side("the original code", import_reference(args.reference, work))
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(train, mode, rep, work / args.engine / f"{mode}_rep{rep}",
                               args.data_root, args.engine)
                   for mode in MODES for rep in range(args.reps)]
        ours = read_side(f"ours ({args.engine} engine)", [f.result() for f in futures])
    settings = VerdictSettings.from_config()
    table = compare_sides(ours, theirs, settings)
    print(to_markdown(table, ours.label, theirs.label, settings))
    print(f"runs in {work}")
    tracked = table[table["tracked"] == True]  # noqa: E712
    return 1 if (tracked["verdict"] == "different").any() else 0


if __name__ == "__main__":
    sys.exit(main())
