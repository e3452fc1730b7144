"""CLI for the figure and table rules (docs/spec.md §5.3-§5.6).

    python -m askdagger_mnist.cli.plots main --runs-csv CSV --curves CSV.GZ \\
        --modes sensitivity specificity success --s-des 0.1 ... 0.9 --reps 10 \\
        --out figures/mnist.pdf [--variant sag]
    python -m askdagger_mnist.cli.plots reg-ablation --runs-csv CSV --curves CSV.GZ \\
        --s-des S ... --reps N --variants sag no_normalization no_imputation \\
        --out-figure figures/mnist_reg_ablation.pdf --out-tables results/tables/reg_ablation
    python -m askdagger_mnist.cli.plots prand-ablation --runs-csv CSV --curves CSV.GZ \\
        --s-des S ... --reps N --variants prand0.05 sag prand0.2 \\
        --out-figure figures/mnist_prand_ablation.pdf --out-tables results/tables/prand_ablation
    python -m askdagger_mnist.cli.plots sag --run RUN_DIR --out figures/sag.pdf [--step N]

Every figure averages exactly the runs it names (modes x variants x s_des x repetitions
0..N-1) and refuses, listing them, when any is missing from runs.csv or curves.csv.gz.
Outputs are written atomically. Tables are written as PREFIX.csv, PREFIX.md and PREFIX.tex.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from .common import run_writing
from ..analysis.inputs import curve_stats, load_for_figure
from ..settings import ABLATION_MODE, FIGURE_VARIANTS, MODES
from ..experiment.naming import format_s_des


def _check_out(path: Path, suffixes: Sequence[str], flag: str) -> None:
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path} must end with {' or '.join(suffixes)}.")


def cmd_main(args: argparse.Namespace) -> list[Path]:
    from ..analysis.figures import main_figure, note_provenance, save_figure_atomic

    _check_out(args.out, (".pdf", ".png", ".svg"), "--out")
    modes = list(args.modes)
    runs, curves = load_for_figure(
        args.runs_csv, args.curves, modes, [args.variant], args.s_des, args.reps,
        f"the main figure {args.out}",
    )
    stats = curve_stats(curves, ["sensitivity", "specificity", "system_success", "query_rate", "novice_success"])
    fig = main_figure(stats, modes, args.s_des, args.reps, variant=args.variant)
    note_provenance(fig, runs)
    save_figure_atomic(fig, args.out)
    return [args.out]


def _variant_p_rand(runs, variants: Sequence[str], source: Path) -> dict[str, float]:
    """The p_rand of each variant, read from runs.csv (one value per variant)."""
    out = {}
    for variant in variants:
        values = sorted(set(runs.loc[runs["variant"] == variant, "p_rand"].round(12)))
        if len(values) != 1:
            raise UserError(
                f"{source} gives variant {variant} several p_rand values "
                f"({', '.join(f'{v:g}' for v in values)}): aggregate runs of one p_rand per variant."
            )
        out[variant] = float(values[0])
    return out


def _ablation_inputs(args: argparse.Namespace, what: str):
    """(variants, runs, curves) of an ablation figure, every run it names checked present."""
    _check_out(args.out_figure, (".pdf", ".png", ".svg"), "--out-figure")
    variants = list(args.variants)
    runs, curves = load_for_figure(
        args.runs_csv, args.curves, [ABLATION_MODE], variants, args.s_des, args.reps,
        f"the {what} {args.out_figure}",
    )
    return variants, runs, curves


def cmd_reg_ablation(args: argparse.Namespace) -> list[Path]:
    from ..analysis.figures import (VARIANT_TITLES, ablation_figure, note_provenance,
                                    save_figure_atomic)
    from ..analysis.tables import summary_table, write_tables

    variants, runs, curves = _ablation_inputs(args, "regularisation ablation")
    titles = [VARIANT_TITLES.get(v, v) for v in variants]
    stats = curve_stats(curves, ["sensitivity"])
    fig = ablation_figure(
        stats, variants, titles,
        [("sensitivity", "Sensitivity\n(last 1000 failures)", True)],
        args.s_des, args.reps,
        f"Regularisation ablation, sensitivity-aware gating: mean $\\pm$ std over {args.reps} repetitions",
    )
    note_provenance(fig, runs)
    save_figure_atomic(fig, args.out_figure)
    table = summary_table(runs, ["sensitivity"], variants, titles, args.s_des)
    paths = write_tables(
        table, args.out_tables,
        f"Whole-run sensitivity of sensitivity-aware gating per desired sensitivity: "
        f"mean ± std (population) over {args.reps} repetitions.",
    )
    return [args.out_figure, *paths]


def cmd_prand_ablation(args: argparse.Namespace) -> list[Path]:
    from ..analysis.figures import (P_RAND_TEX, ablation_figure, note_provenance,
                                    save_figure_atomic)
    from ..analysis.tables import summary_table, write_tables

    variants, runs, curves = _ablation_inputs(args, "p_rand ablation")
    p_rand = _variant_p_rand(runs, variants, args.runs_csv)
    titles = [f"{P_RAND_TEX} = {p_rand[v]:g}" for v in variants]
    stats = curve_stats(curves, ["sensitivity", "specificity"])
    fig = ablation_figure(
        stats, variants, titles,
        [
            ("sensitivity", "Sensitivity\n(last 1000 failures)", True),
            ("specificity", "Specificity\n(last 1000 successes)", False),
        ],
        args.s_des, args.reps,
        f"Random-query ablation, sensitivity-aware gating: mean $\\pm$ std over {args.reps} repetitions",
    )
    note_provenance(fig, runs)
    save_figure_atomic(fig, args.out_figure)
    table = summary_table(
        runs, ["sensitivity", "informedness"], variants, [f"p_rand = {p_rand[v]:g}" for v in variants], args.s_des
    )
    paths = write_tables(
        table, args.out_tables,
        f"Whole-run sensitivity and informedness of sensitivity-aware gating per random-query "
        f"probability: mean ± std (population) over {args.reps} repetitions.",
        tex_labels=[f"$p_{{\\mathrm{{rand}}}} = {p_rand[v]:g}$" for v in variants],
    )
    return [args.out_figure, *paths]


def cmd_sag(args: argparse.Namespace) -> list[Path]:
    from ..analysis.sag_figure import sag_figure_for_run

    _check_out(args.out, (".pdf", ".png", ".svg"), "--out")
    sag_figure_for_run(args.run, args.out, step=args.step)
    return [args.out]


def _s_des_list(values: Sequence[float]) -> list[float]:
    return [float(format_s_des(v)) for v in values]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m askdagger_mnist.cli.plots", description="Figures and tables of the MNIST SAG experiments."
    )
    sub = parser.add_subparsers(dest="figure", required=True, metavar="FIGURE")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--runs-csv", required=True, type=Path, metavar="CSV", help="results/metrics/runs.csv")
        p.add_argument("--curves", required=True, type=Path, metavar="CSV.GZ", help="results/metrics/curves.csv.gz")
        p.add_argument("--s-des", required=True, nargs="+", type=float, metavar="S")
        p.add_argument("--reps", required=True, type=int, metavar="N", help="repetitions 0..N-1 are averaged")

    p = sub.add_parser("main", help="the 3 x 3 paper figure (figures/mnist.pdf)")
    common(p)
    p.add_argument("--modes", nargs="+", default=list(MODES), metavar="MODE")
    p.add_argument("--variant", default=FIGURE_VARIANTS["main"]["variant"])
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_main)

    for name, func, group in (("reg-ablation", cmd_reg_ablation, "reg_ablation"),
                              ("prand-ablation", cmd_prand_ablation, "prand_ablation")):
        p = sub.add_parser(name, help=f"{name} figure and tables ({ABLATION_MODE} mode)")
        common(p)
        p.add_argument("--variants", nargs="+", default=list(FIGURE_VARIANTS[group]["variants"]),
                       metavar="VARIANT")
        p.add_argument("--out-figure", required=True, type=Path)
        p.add_argument("--out-tables", required=True, type=Path, metavar="PREFIX")
        p.set_defaults(func=func)

    p = sub.add_parser("sag", help="the four-panel illustration of one SAG call (figures/sag.pdf)")
    p.add_argument("--run", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--step", type=int, default=None, help="the step whose SAG call to show (default: the last)")
    p.set_defaults(func=cmd_sag)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "s_des"):
        args.s_des = _s_des_list(args.s_des)
    return run_writing(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
