"""Run directories -> two tidy tables (docs/spec.md §5.1-§5.2; CLI: ``cli.aggregate``).

``runs.csv``: one row per run, its settings and whole-run metrics (``metrics.whole_run_metrics``
recomputed from the arrays, never copied from run.json). ``curves.csv.gz``: one row per
(run, step) with the windowed curves of ``metrics.windowed_curves``. Both are written
atomically and byte-for-byte reproducibly (gzip header without a timestamp).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np
import pandas as pd

from ..errors import UserError
from ..algorithm.metrics import CURVE_COLUMNS, whole_run_metrics, windowed_curves
from ..data.atomic import write_bytes_atomic
from ..data.invariants import InconsistentRun, read_consistent_arrays
from ..data.rundir import DamagedArrays, read_arrays, read_info
from ..settings import MODES

T = TypeVar("T")

# Columns identifying a run (unique in runs.csv; the key of curves.csv.gz).
KEY_COLUMNS = ("mode", "variant", "s_des", "rep")
# Settings copied from run.json["settings"] (plus the key columns and the run's source).
SETTING_COLUMNS = (
    "p_rand",
    "normalization",
    "imputation",
    "batch_size",
    "update_every",
    "steps",
)
METRIC_COLUMNS = (
    "n_samples",
    "n_steps",
    "tp",
    "fp",
    "tn",
    "fn",
    "sensitivity",
    "specificity",
    "informedness",
    "query_rate",
    "novice_success",
    "system_success",
    "train_set_size",
)
# Who made each run (from run.json): the engine, the device and the package version; for an
# authors' run "authors' code". Engines and devices agree step for step only for a few dozen
# steps (docs/spec.md §7.3), so a table that mixes them says so (``mixed_provenance``).
PROVENANCE_COLUMNS = ("engine", "device", "version")
RUNS_COLUMNS = (*KEY_COLUMNS, *SETTING_COLUMNS, "source", *PROVENANCE_COLUMNS, *METRIC_COLUMNS,
                "run_dir")
CURVES_COLUMNS = (*KEY_COLUMNS, "step", *CURVE_COLUMNS)
CURVE_FLOAT_FORMAT = "%.10g"  # ample for plotting; keeps curves.csv.gz small

_REQUIRED_SETTINGS = ("mode", "s_des", "rep", "variant", *SETTING_COLUMNS)


def _mode_order(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def read_run(run_dir: Path, consistent: bool = False
             ) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """One run directory -> (its settings, run.json, arrays), checked: every problem is one
    sentence naming the file and what to do. ``consistent``: the arrays also hold what every
    run does (data/invariants.py)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: run its train job first.")
    info = _unreadable_as_one_sentence(run_dir, lambda: read_info(run_dir))
    settings = info.get("settings") if isinstance(info, dict) else None
    if not isinstance(settings, dict):
        raise UserError(f"{run_dir / 'run.json'} has no 'settings' object: re-run its train job.")
    missing = [name for name in _REQUIRED_SETTINGS if name not in settings]
    if missing:
        raise UserError(
            f"{run_dir / 'run.json'} lacks the setting(s) {', '.join(missing)}: "
            "re-run its train job or re-import it."
        )
    batch_size = int(settings["batch_size"])
    if batch_size < 1:
        raise UserError(f"{run_dir / 'run.json'} has batch_size {settings['batch_size']}: it must be >= 1.")
    arrays = _unreadable_as_one_sentence(run_dir, lambda: (
        read_consistent_arrays(run_dir, batch_size) if consistent else read_arrays(run_dir)))
    for name in ("c", "q"):
        if name not in arrays:
            raise UserError(f"{run_dir / 'arrays.npz'} lacks the array {name!r}: re-run its train job.")
    c, q = arrays["c"], arrays["q"]
    if c.ndim != 1 or c.shape != q.shape or len(c) == 0:
        raise UserError(
            f"{run_dir / 'arrays.npz'} has inconsistent arrays c {c.shape} and q {q.shape}: "
            "re-run its train job."
        )
    return settings, info, arrays


def read_consistent_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """``read_run``, and the arrays hold what every run does (data/invariants.py)."""
    return read_run(run_dir, consistent=True)


def _unreadable_as_one_sentence(run_dir: Path, read: Callable[[], T]) -> T:
    """``read()``, its errors but a damaged or inconsistent run's (their own sentences) worded
    as one sentence naming the run directory."""
    try:
        return read()
    except (DamagedArrays, InconsistentRun):
        raise
    except (OSError, ValueError, EOFError) as exc:  # JSONDecodeError is a ValueError
        raise UserError(
            f"run directory {run_dir} is unreadable ({type(exc).__name__}: {exc}): re-run its train job."
        ) from exc


def load_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run directory -> (its runs.csv row, its curves as a DataFrame)."""
    run_dir = Path(run_dir)
    settings, info, arrays = read_consistent_run(run_dir)
    c, q = arrays["c"], arrays["q"]
    batch_size = int(settings["batch_size"])

    metrics = whole_run_metrics(c, q)
    if "train_idx" in arrays:
        train_set_size = int(len(arrays["train_idx"]))
    else:
        train_set_size = int(info.get("metrics", {}).get("train_set_size", int(np.sum(q != 0))))
    row: dict[str, Any] = {
        "mode": str(settings["mode"]),
        "variant": str(settings["variant"]),
        "s_des": float(settings["s_des"]),
        "rep": int(settings["rep"]),
        "p_rand": float(settings["p_rand"]),
        "normalization": bool(settings["normalization"]),
        "imputation": bool(settings["imputation"]),
        "batch_size": batch_size,
        "update_every": int(settings["update_every"]),
        "steps": int(settings["steps"]),
        "source": str(info.get("source", "unknown")),
        **provenance(info),
        "n_steps": -(-len(c) // batch_size),
        "train_set_size": train_set_size,
        "run_dir": str(run_dir),
    }
    row.update({name: metrics[name] for name in METRIC_COLUMNS if name in metrics})

    curves = pd.DataFrame(windowed_curves(c, q, batch_size))
    for name in reversed(KEY_COLUMNS):
        curves.insert(0, name, row[name])
    return row, curves[list(CURVES_COLUMNS)]


def provenance(info: dict[str, Any]) -> dict[str, str]:
    """engine, device and version of a run, from its run.json."""
    if info.get("source") == "authors":
        return {"engine": "authors' code", "device": "unknown", "version": "authors' code"}
    versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
    return {"engine": str(info.get("engine", "unknown")),
            "device": str(info.get("device", "unknown")).split(" ")[0].split(":")[0],
            "version": str(versions.get("askdagger_mnist", "unknown"))}


def provenance_mix(runs: pd.DataFrame) -> str | None:
    """What the runs mix, e.g. "engines (fast: 200, plain: 70)", or None (also for a runs.csv
    of an older version, which has no provenance columns)."""
    parts = []
    for column, what in (("engine", "engines"), ("device", "devices"), ("version", "versions")):
        if column not in runs:
            continue
        counts = runs[column].value_counts()
        if len(counts) > 1:
            parts.append(f"{what} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
    return " and ".join(parts) or None


def mixed_provenance(runs: pd.DataFrame) -> str | None:
    """One line when the runs were made by more than one engine, kind of device or version."""
    mix = provenance_mix(runs)
    if mix is None:
        return None
    return (f"these {len(runs)} runs mix {mix}; engines and devices agree step "
            "for step only for a few dozen steps, so compare such tables as samples (runs.csv "
            "says which made each run).")


def aggregate(run_dirs: Iterable[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run directories -> (runs table, curves table), sorted by mode, variant, s_des, rep."""
    rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    seen: dict[tuple, str] = {}
    for run_dir in run_dirs:
        row, curve = load_run(Path(run_dir))
        key = tuple(row[name] for name in KEY_COLUMNS)
        if key in seen:
            raise UserError(
                f"run directories {seen[key]} and {row['run_dir']} are the same run "
                f"(mode {key[0]}, variant {key[1]}, s_des {key[2]:g}, rep {key[3]}): pass each run once."
            )
        seen[key] = row["run_dir"]
        rows.append(row)
        curves.append(curve)
    if not rows:
        raise UserError("no run directories were given: pass at least one with --runs.")

    runs = pd.DataFrame(rows, columns=list(RUNS_COLUMNS))
    runs["_order"] = runs["mode"].map(_mode_order)
    runs = runs.sort_values(["_order", "variant", "s_des", "rep"], kind="stable")
    order = runs.index.to_list()
    runs = runs.drop(columns="_order").reset_index(drop=True)
    curves_df = pd.concat([curves[i] for i in order], ignore_index=True)
    return runs, curves_df


def write_csv_atomic(df: pd.DataFrame, path: Path, **to_csv_kwargs: Any) -> None:
    """Write ``df`` to ``path`` atomically (gzip-compressed when it ends with .gz)."""
    text = df.to_csv(index=False, **to_csv_kwargs).encode("utf-8")
    if str(path).endswith(".gz"):
        # No file name and mtime 0 in the gzip header: the same runs give the same bytes.
        text = gzip.compress(text, compresslevel=6, mtime=0)
    write_bytes_atomic(Path(path), text)
