"""CLI for the reproduction rules (docs/reproduction.md): our runs against imported ones.

    python -m askdagger_mnist.cli.reproduction verdict --ours RUN_DIR [RUN_DIR ...] \\
        --theirs results/compare/authors_sensitivity [...] \\
        --out-csv results/reproduction/verdict.csv --out-md results/reproduction/verdict.md
    python -m askdagger_mnist.cli.reproduction figure --ours RUN_DIR ... --theirs DIR ... \\
        --out figures/reproduction.pdf
    python -m askdagger_mnist.cli.reproduction configurations --theirs DIR ... \\
        --ours-configurations JSON --out results/reproduction/comparable.json

``configurations`` runs before any of ours is trained (the workflow's checkpoint): from the
imported archives' run.json files and the configurations the config plans (a JSON list of
settings.configuration_key tuples), it writes those both have, so that the verdict and the
figure depend on the runs of ours they can compare and on no other.

``--theirs`` names imported archives (staging folders holding
``{mode}/{variant}/s{s_des}/rep{rep}`` runs); several are one side, the first archive winning
for a run two of them hold. The margins, the fewest runs per side and the curve-gap start
default to settings.REPRODUCTION_DEFAULTS (the config's
``reproduction`` section). Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..analysis.aggregate import write_csv_atomic
from ..analysis.sides import Side, read_side, run_dirs_under
from ..analysis.verdict import VerdictSettings
from ..data.atomic import write_bytes_atomic
from ..data.rundir import read_info
from ..errors import UserError
from .common import run_writing
from ..experiment.naming import format_s_des
from ..settings import MIN_RUNS_CALIBRATED, REPRODUCTION_DEFAULTS, configuration_key

OURS_LABEL = "ours"


def _describe(configs) -> str:
    names = sorted({f"{c[0]} p_rand {c[1]:g} s_des {format_s_des(c[4])}" for c in configs})
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def check_archive(folder: Path, theirs: set, ours: set) -> None:
    """One sentence when an imported archive is missing, empty or holds no configuration of
    ours (``theirs``, ``ours``: sets of configuration keys)."""
    if not theirs:
        raise UserError(f"{folder} holds no run directories: check that its archive holds "
                        "runs of the configured variants, batch_size and update_every "
                        "(its import log says what was skipped and why).")
    if not theirs & ours:
        raise UserError(
            f"{folder} holds no configuration that ours has (it has {_describe(theirs)}; "
            f"ours: {_describe(ours)}): compare with an archive of the same "
            "experiment, or add its settings to the config (modes, s_des, variants).")


def existing_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise UserError(f"{folder} does not exist: import the archive first "
                        "(snakemake imports every compare_with archive by itself).")
    return folder


def read_sides(args: argparse.Namespace) -> tuple[Side, Side]:
    """Our side and theirs; one sentence when an archive holds nothing comparable."""
    ours = read_side(args.ours_label, args.ours)
    theirs = Side(args.theirs_label or " + ".join(p.name for p in args.theirs))
    for folder in args.theirs:
        archive = read_side(folder.name, run_dirs_under(existing_folder(folder)))
        check_archive(folder, set(archive.runs), set(ours.runs))
        for runs in archive.runs.values():
            for run in runs:  # the first archive wins for a run two of them hold (Side.add)
                theirs.add(run)
    return ours, theirs


def cmd_verdict(args: argparse.Namespace) -> list[Path]:
    from ..analysis.verdict import compare_sides, summary_line, to_markdown

    settings = verdict_settings(args)  # a bad flag is refused before any run is read
    ours, theirs = read_sides(args)
    table = compare_sides(ours, theirs, settings)
    write_csv_atomic(table, args.out_csv)
    write_bytes_atomic(args.out_md, to_markdown(table, ours.label, theirs.label, settings).encode())
    print(summary_line(table))
    return [args.out_csv, args.out_md]


def cmd_configurations(args: argparse.Namespace) -> list[Path]:
    try:
        ours = {tuple(c) for c in json.loads(args.ours_configurations)}
    except (ValueError, TypeError) as exc:
        raise UserError(f"--ours-configurations is not a JSON list of configurations ({exc}).")
    comparable: set = set()
    for folder in args.theirs:
        runs = run_dirs_under(existing_folder(folder))
        theirs = {configuration_key(read_info(run)["settings"]) for run in runs}
        check_archive(folder, theirs, ours)
        comparable |= theirs & ours
    text = json.dumps({"configurations": sorted(comparable)}, indent=1)
    write_bytes_atomic(args.out, text.encode())
    print(f"{len(comparable)} configuration(s) of ours can be compared")
    return [args.out]


def cmd_figure(args: argparse.Namespace) -> list[Path]:
    from ..analysis.figures import save_figure_atomic
    from ..analysis.reproduction_figure import reproduction_figure

    if args.out.suffix.lower() not in (".pdf", ".png", ".svg"):
        raise UserError(f"--out {args.out} must end with .pdf, .png or .svg.")
    ours, theirs = read_sides(args)
    save_figure_atomic(reproduction_figure(ours, theirs), args.out)
    return [args.out]


def verdict_settings(args: argparse.Namespace) -> VerdictSettings:
    # (the margins: VerdictSettings refuses them outside (0, 1), naming the config key)
    for flag, value, least in (("--min-runs", args.min_runs, MIN_RUNS_CALIBRATED),
                               ("--curve-after-step", args.curve_after_step, 0)):
        if not value >= least:
            raise UserError(f"{flag} must be >= {least}, not {value}.")
    return VerdictSettings.from_config({
        "margins": {"tracked": args.margin_tracked, "others": args.margin_others},
        "min_runs": args.min_runs,
        "curve_after_step": args.curve_after_step,
    })


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m askdagger_mnist.cli.reproduction",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = REPRODUCTION_DEFAULTS
    s = sub.add_parser("configurations")
    s.set_defaults(func=cmd_configurations)
    s.add_argument("--theirs", nargs="+", type=Path, required=True, metavar="IMPORTED_DIR")
    s.add_argument("--ours-configurations", required=True, metavar="JSON")
    s.add_argument("--out", type=Path, required=True)
    for name, func in (("verdict", cmd_verdict), ("figure", cmd_figure)):
        s = sub.add_parser(name)
        s.set_defaults(func=func)
        s.add_argument("--ours", nargs="+", type=Path, required=True, metavar="RUN_DIR")
        s.add_argument("--theirs", nargs="+", type=Path, required=True, metavar="IMPORTED_DIR")
        s.add_argument("--ours-label", default=OURS_LABEL)
        s.add_argument("--theirs-label", help="default: the imported folders' names")
        if name == "verdict":
            s.add_argument("--margin-tracked", type=float, default=d["margins"]["tracked"])
            s.add_argument("--margin-others", type=float, default=d["margins"]["others"])
            s.add_argument("--min-runs", type=int, default=d["min_runs"])
            s.add_argument("--curve-after-step", type=int, default=d["curve_after_step"])
            s.add_argument("--out-csv", type=Path, required=True)
            s.add_argument("--out-md", type=Path, required=True)
        else:
            s.add_argument("--out", type=Path, required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_writing(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
