"""CLI for the ``aggregate`` rules: run directories -> runs.csv and curves.csv.gz
(``analysis.aggregate``).

    python -m askdagger_mnist.cli.aggregate --runs RUN_DIR [RUN_DIR ...] \\
        --out-runs results/metrics/runs.csv --out-curves results/metrics/curves.csv.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..analysis.aggregate import CURVE_FLOAT_FORMAT, aggregate, mixed_provenance, write_csv_atomic
from ..errors import UserError
from .common import run_command

if TYPE_CHECKING:
    import pandas as pd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m askdagger_mnist.cli.aggregate",
        description="Aggregate run directories into runs.csv (one row per run) and "
        "curves.csv.gz (one row per run and step).",
    )
    parser.add_argument("--runs", nargs="+", required=True, type=Path, metavar="RUN_DIR")
    parser.add_argument("--out-runs", required=True, type=Path, metavar="CSV")
    parser.add_argument("--out-curves", required=True, type=Path, metavar="CSV.GZ")
    return parser


def aggregate_runs(args: argparse.Namespace) -> "pd.DataFrame":
    """Write runs.csv and curves.csv.gz of ``args.runs``; returns runs.csv's table."""
    if not str(args.out_curves).endswith(".gz"):
        raise UserError(f"--out-curves {args.out_curves} must end with .gz (it is gzip-compressed).")
    runs, curves = aggregate(args.runs)
    write_csv_atomic(curves, args.out_curves, float_format=CURVE_FLOAT_FORMAT)
    write_csv_atomic(runs, args.out_runs)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def report(runs: "pd.DataFrame") -> None:
        print(f"aggregated {len(runs)} runs into {args.out_runs} and {args.out_curves}")
        mixed = mixed_provenance(runs)
        if mixed:
            print(f"warning: {mixed}", file=sys.stderr)

    return run_command(lambda: aggregate_runs(args), report)


if __name__ == "__main__":
    sys.exit(main())
