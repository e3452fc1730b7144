"""Inputs of the figure and table stages: reading runs.csv / curves.csv.gz, checking that every
expected run is there, and per-step statistics across repetitions (docs/spec.md §5.3).

A figure never silently averages fewer runs than it claims: ``require_runs`` raises a
``MissingRunsError`` listing exactly the missing (mode, variant, s_des, rep) combinations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import UserError
from ..algorithm.metrics import CURVE_COLUMNS
from ..settings import MODES
from ..experiment.grid import run_keys
from ..experiment.naming import format_s_des, run_label

KEY = ("mode", "variant", "s_des", "rep")
RUNS_NEEDED = (*KEY, "p_rand", "sensitivity", "specificity", "informedness")
CURVES_NEEDED = (*KEY, "step", *CURVE_COLUMNS)


class MissingRunsError(UserError):
    """Expected runs are absent; ``missing`` holds their (mode, variant, s_des, rep) keys."""

    def __init__(self, message: str, missing: list[tuple[str, str, float, int]]):
        super().__init__(message)
        self.missing = missing


def _read_csv(path: Path, needed: Sequence[str], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist: run the aggregate step first.")
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError, EOFError) as exc:  # pandas' parser errors are ValueErrors
        raise UserError(f"{what} {path} is unreadable ({exc}): run the aggregate step again.") from exc
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise UserError(
            f"{what} {path} lacks the column(s) {', '.join(missing)}: "
            "regenerate it with python -m askdagger_mnist.cli.aggregate."
        )
    df["s_key"] = df["s_des"].map(format_s_des)
    df["rep"] = df["rep"].astype(int)
    df["mode"] = df["mode"].astype(str)
    df["variant"] = df["variant"].astype(str)
    return df


def read_runs(path: Path) -> pd.DataFrame:
    return _read_csv(path, RUNS_NEEDED, "runs table")


def read_curves(path: Path) -> pd.DataFrame:
    return _read_csv(path, CURVES_NEEDED, "curves table")


def validate_request(
    modes: Sequence[str], variants: Sequence[str], s_des: Sequence[float], reps: int
) -> None:
    """One-sentence UserErrors for impossible requests (before any file is read)."""
    for mode in modes:
        if mode not in MODES:
            raise UserError(f"--modes: {mode!r} is not a mode; use {', '.join(MODES)}.")
    if len(set(modes)) != len(modes):
        raise UserError("--modes lists a mode twice: name each mode once.")
    if not variants:
        raise UserError("--variants is empty: name at least one variant.")
    if len(set(variants)) != len(variants):
        raise UserError("--variants lists a variant twice: name each variant once.")
    if not s_des:
        raise UserError("--s-des is empty: give at least one desired value.")
    for s in s_des:
        if not 0.0 < s < 1.0:
            raise UserError(f"--s-des: {s:g} is not strictly between 0 and 1.")
    if len({format_s_des(s) for s in s_des}) != len(s_des):
        raise UserError("--s-des lists a value twice: give each desired value once.")
    if reps < 1:
        raise UserError(f"--reps must be >= 1, not {reps}.")


def require_runs(
    df: pd.DataFrame, expected: Sequence[tuple[str, str, float, int]], source: Path, what: str
) -> pd.DataFrame:
    """The rows of ``df`` for exactly the expected runs; MissingRunsError if any is absent.

    Rows of runs that were not asked for (other modes, more repetitions) are left out.
    """
    have = set(zip(df["mode"], df["variant"], df["s_key"], df["rep"]))
    missing = [key for key in expected if (key[0], key[1], format_s_des(key[2]), key[3]) not in have]
    if missing:
        listing = ", ".join(run_label(*key) for key in missing)
        raise MissingRunsError(
            f"{source} lacks {len(missing)} of the {len(expected)} runs that {what} needs "
            f"({listing}): train them (or fetch them) and aggregate again.",
            missing,
        )
    wanted = pd.DataFrame(
        [(m, v, format_s_des(s), r) for m, v, s, r in expected],
        columns=["mode", "variant", "s_key", "rep"],
    )
    return df.merge(wanted, on=["mode", "variant", "s_key", "rep"], how="inner")


def check_one_row_per_run(runs: pd.DataFrame, source: Path) -> None:
    dup = runs.duplicated(["mode", "variant", "s_key", "rep"], keep=False)
    if dup.any():
        first = runs[dup].iloc[0]
        raise UserError(
            f"{source} holds run {run_label(first['mode'], first['variant'], first['s_des'], first['rep'])} "
            "more than once: aggregate each run directory once."
        )


def curve_stats(curves: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (mode, variant, s_key, step): mean, population std and count of each metric across
    repetitions; NaN points (nothing to average yet) are ignored. Columns ``{metric}_mean``,
    ``{metric}_std``, ``{metric}_n``."""
    group = curves.groupby(["mode", "variant", "s_key", "step"], sort=True)[list(metrics)]
    mean = group.mean().add_suffix("_mean")
    std = group.std(ddof=0).add_suffix("_std")
    count = group.count().add_suffix("_n")
    return pd.concat([mean, std, count], axis=1).reset_index()


def series(
    stats: pd.DataFrame, mode: str, variant: str, s_des: float, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, std) of one metric for one setting."""
    sel = stats[
        (stats["mode"] == mode) & (stats["variant"] == variant) & (stats["s_key"] == format_s_des(s_des))
    ]
    return (
        sel["step"].to_numpy(),
        sel[f"{metric}_mean"].to_numpy(dtype=float),
        sel[f"{metric}_std"].to_numpy(dtype=float),
    )


def load_for_figure(
    runs_csv: Path,
    curves_csv: Path,
    modes: Sequence[str],
    variants: Sequence[str],
    s_des: Sequence[float],
    reps: int,
    what: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs rows and curve rows of exactly the expected runs, all checked present."""
    validate_request(modes, variants, s_des, reps)
    expected = run_keys(modes, variants, s_des, reps)
    runs = read_runs(runs_csv)
    check_one_row_per_run(runs, runs_csv)
    runs = require_runs(runs, expected, runs_csv, what)
    curves = read_curves(curves_csv)
    # Every expected run must have curves too (runs.csv and curves.csv.gz from different
    # aggregations would otherwise plot fewer runs than the title says).
    have_curves = curves.drop_duplicates(["mode", "variant", "s_key", "rep"])
    require_runs(have_curves, expected, curves_csv, what)
    wanted = runs[["mode", "variant", "s_key", "rep"]]
    curves = curves.merge(wanted, on=["mode", "variant", "s_key", "rep"], how="inner")
    return runs, curves
