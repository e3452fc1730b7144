"""The authors' published results: a restricted reader and the conversion into our run format.

The authors' code writes each run as

    results_{mode}/r{p_rand}_s{s_des}_u{normalization}_i{impute}_b{batch}_e{update_every}/{rep}/
        results.npy       np.save of a dict -> a pickled 0-d object array (untrusted input)
        r..._e5.pt        LeNet state dict, keys core_model.{conv1,conv2,fc1,fc2,fc3}.{weight,bias}

``results.npy`` is read by ``prebuilt.authors_pickle.load_results_npy``, which never runs
pickled code; the state dict by ``prebuilt.authors_model.convert_state_dict`` (bounded, then
``torch.load(weights_only=True)``). A refused state dict leaves the run without ``model.pt``,
and the log, ``import.json`` and the run's provenance say which file and why.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np

from ..data import rundir
from ..data.atomic import atomic_dir
from ..data.invariants import run_problem
from ..errors import UserError
from .authors_model import run_model
from .authors_pickle import load_results_npy
from ..algorithm.metrics import whole_run_metrics
from ..settings import ABLATION_MODE, MODES, RunSettings
from ..experiment.naming import run_subdir

log = logging.getLogger(__name__)

# --- run directory names and layout ----------------------------------------------------------

_RUN_DIR = re.compile(
    r"r(?P<p_rand>[0-9.eE+-]+)_s(?P<s_des>[0-9.eE+-]+)_u(?P<normalization>True|False)"
    r"_i(?P<imputation>True|False)_b(?P<batch_size>\d+)_e(?P<update_every>\d+)"
)
_MODE_DIR = re.compile(r"(?:results_)?(?P<mode>" + "|".join(MODES) + r")")


def parse_run_dirname(name: str) -> dict[str, Any] | None:
    """Settings encoded in an authors' run directory name, or None if it is not one."""
    m = _RUN_DIR.fullmatch(name)
    if not m:
        return None
    try:
        return {
            "p_rand": float(m["p_rand"]),
            "s_des": float(m["s_des"]),
            "normalization": m["normalization"] == "True",
            "imputation": m["imputation"] == "True",
            "batch_size": int(m["batch_size"]),
            "update_every": int(m["update_every"]),
        }
    except ValueError:
        return None


@dataclass(frozen=True)
class AuthorsRun:
    mode: str
    rep: int
    settings: dict  # parsed from the directory name
    results: Path  # .../{rep}/results.npy
    rel: str  # path inside the archive, for provenance


def find_runs(root: Path, default_mode: str = ABLATION_MODE) -> list[AuthorsRun]:
    """All ``.../{run dir}/{rep}/results.npy`` below ``root`` (an extracted archive).

    The mode is the nearest path component ``results_{mode}`` or ``{mode}`` above the run dir;
    the ablations archive has none (``results/r.../{rep}``): those runs get ``default_mode``.
    """
    root = Path(root)
    runs = []
    for path in sorted(root.rglob("results.npy")):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        parts = rel.parts
        if "__MACOSX" in parts or len(parts) < 3 or not parts[-2].isdigit():
            continue
        settings = parse_run_dirname(parts[-3])
        if settings is None:
            continue
        mode = default_mode
        for part in reversed(parts[:-3]):
            m = _MODE_DIR.fullmatch(part)
            if m:
                mode = m["mode"]
                break
        runs.append(AuthorsRun(mode, int(parts[-2]), settings, path, str(rel)))
    return runs


def match_variant(settings: Mapping[str, Any], variants: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The configured variant with this run's (p_rand, normalization, imputation), if any."""
    found = [
        name
        for name, v in variants.items()
        if math.isclose(float(v["p_rand"]), settings["p_rand"], rel_tol=0, abs_tol=1e-9)
        and bool(v["normalization"]) == settings["normalization"]
        and bool(v["imputation"]) == settings["imputation"]
    ]
    if len(found) > 1:
        raise UserError(
            f"config key variants has {', '.join(found)} with the same p_rand, normalization and "
            "imputation: give each variant distinct settings."
        )
    return found[0] if found else None


# --- conversion ------------------------------------------------------------------------------

STREAM_KEYS = ("u", "k", "g", "c", "r", "q", "q_a")


def _array(where: str, name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError):  # ragged lists and the like
        raise UserError(f"{where}: {name!r} is not an array of numbers; the archive is corrupt.") from None


def _exact_ints(name: str, values: Any, allowed: tuple[int, ...] | None, where: str) -> np.ndarray:
    v = _array(where, name, values)
    if v.dtype.kind not in "biuf" or v.ndim != 1:
        raise UserError(f"{where}: array {name!r} is not a 1-d numeric array; the archive is corrupt.")
    if v.dtype.kind == "f" and not np.all(np.isfinite(v) & (v == np.round(v))):
        raise UserError(f"{where}: array {name!r} holds non-integer values; the archive is corrupt.")
    ints = v.astype(np.int64)
    if allowed is not None and not np.all(np.isin(ints, allowed)):
        raise UserError(f"{where}: array {name!r} holds values outside {allowed}; the archive is corrupt.")
    if allowed is None and ints.size and ints.min() < 0:
        raise UserError(f"{where}: array {name!r} holds negative values; the archive is corrupt.")
    return ints


def convert_arrays(raw: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """The authors' dict -> our arrays (``train_subset`` -> ``train_idx``; no ``stream_idx``)."""
    missing = [k for k in (*STREAM_KEYS, "train_subset") if k not in raw]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}: it is not a complete authors' run.")
    n = _array(where, "u", raw["u"]).size
    out: dict[str, np.ndarray] = {}
    for key in ("u", "g"):
        v = _array(where, key, raw[key])
        if v.dtype.kind not in "biuf" or v.shape != (n,):
            raise UserError(f"{where}: array {key!r} does not have {n} numbers; the archive is corrupt.")
        out[key] = v.astype(np.float64)
    out["k"] = _exact_ints("k", raw["k"], None, where)
    for key in ("c", "q", "q_a"):
        out[key] = _exact_ints(key, raw[key], (0, 1), where)
    out["r"] = _exact_ints("r", raw["r"], (-1, 0, 1), where)
    for key in STREAM_KEYS:
        if out[key].shape != (n,):
            raise UserError(f"{where}: array {key!r} has {len(out[key])} entries, not {n}; the archive is corrupt.")
    subset = _array(where, "train_subset", raw["train_subset"])
    subset = subset if subset.size else np.zeros(0, dtype=np.int64)
    out["train_idx"] = _exact_ints("train_subset", subset.reshape(-1), None, where)
    return out


def import_run(
    run: AuthorsRun,
    variant: str,
    out_dir: Path,
    provenance: Mapping[str, Any],
    with_model: bool = True,
) -> dict[str, str] | None:
    """Convert one authors' run into our run directory ``out_dir`` (written atomically).

    Returns None, or the refused model file (``file`` inside the archive and ``reason``): the
    run is imported without it, and the log says so.
    """
    where = f"{run.rel} in {provenance.get('archive', 'the archive')}"
    raw = load_results_npy(run.results, where)
    arrays = convert_arrays(raw, where)
    s = run.settings
    broken = run_problem(arrays, s["batch_size"])
    if broken:
        raise UserError(f"{where}: the run breaks an invariant every run satisfies: {broken}; "
                        "nothing was imported (the archive is corrupt or not the authors' runs).")
    n = len(arrays["u"])
    try:
        settings = RunSettings(
            mode=run.mode,
            s_des=s["s_des"],
            rep=run.rep,
            p_rand=s["p_rand"],
            normalization=s["normalization"],
            imputation=s["imputation"],
            batch_size=s["batch_size"],
            update_every=s["update_every"],
            steps=max(n // s["batch_size"], 1),
        )
    except ValueError as exc:
        raise UserError(f"{run.rel} names invalid settings ({exc}); the archive is corrupt.") from None
    model, model_note, refused = run_model(run.results, run.rel, with_model)
    metrics = whole_run_metrics(arrays["c"], arrays["q"])
    metrics["train_set_size"] = int(len(arrays["train_idx"]))
    info = {
        "settings": {**settings.to_dict(), "variant": variant},
        "seed": None,  # the authors seeded with seed + rep; not recorded in their files
        "versions": rundir.installed_versions(("askdagger-mnist", "numpy", "torch")),
        "device": "unknown (authors' run)",
        "threads": None,
        "n_steps": -(-n // s["batch_size"]),
        "wall_time_s": None,
        "metrics": metrics,
        "source": "authors",
        "provenance": {**provenance, "original_path": run.rel, "model": model_note},
        "slurm": None,
    }

    def fill(tmp: Path) -> None:
        rundir.write_run_files(tmp, arrays, info)
        if model is not None:
            import torch

            torch.save(model, tmp / rundir.MODEL_FILE)

    atomic_dir(out_dir, fill)
    return refused


@dataclass
class ImportReport:
    """What ``import_tree`` did: the runs written and the model files it refused."""

    runs: list[Path] = field(default_factory=list)
    models_refused: list[dict[str, str]] = field(default_factory=list)  # run, file, reason


def _targets(runs: list[AuthorsRun], staging: Path, variants: Mapping[str, Mapping[str, Any]],
             batch_size: int | None, update_every: int | None) -> dict[Path, AuthorsRun]:
    """Where each wanted run goes; the others are counted and logged by why they are skipped."""
    targets: dict[Path, AuthorsRun] = {}
    skipped: dict[str, int] = {}
    for run in runs:
        s = run.settings
        variant = match_variant(s, variants)
        reason = None
        if variant is None:
            reason = f"p_rand {s['p_rand']:g}, normalization {s['normalization']}, imputation {s['imputation']} matches no configured variant"
        elif batch_size is not None and s["batch_size"] != batch_size:
            reason = f"batch size {s['batch_size']} is not the configured {batch_size}"
        elif update_every is not None and s["update_every"] != update_every:
            reason = f"update_every {s['update_every']} is not the configured {update_every}"
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        target = Path(staging) / run_subdir(run.mode, variant, s["s_des"], run.rep)
        if target in targets:
            raise UserError(
                f"{targets[target].rel} and {run.rel} would both become run {target.relative_to(staging)}: "
                "set batch_size/update_every to pick one."
            )
        targets[target] = run
    for reason, count in skipped.items():
        log.info(f"skipped {count} run(s): {reason}")
    return targets


def import_tree(
    root: Path,
    staging: Path,
    variants: Mapping[str, Mapping[str, Any]],
    provenance: Mapping[str, Any],
    default_mode: str = ABLATION_MODE,
    batch_size: int | None = None,
    update_every: int | None = None,
    with_model: bool = True,
) -> ImportReport:
    """Import every authors' run below ``root`` into ``staging/{mode}/{variant}/s{s}/rep{r}``."""
    runs = find_runs(root, default_mode)
    if not runs:
        raise UserError(
            f"{provenance.get('url', root)} holds no results_{{mode}}/r..._s..._u..._i..._b..._e.../"
            "{rep}/results.npy: it is not an archive of the authors' results; check its url and format."
        )
    report = ImportReport()
    for target, run in sorted(_targets(runs, staging, variants, batch_size, update_every).items()):
        name = target.relative_to(staging)
        refused = import_run(run, name.parts[1], target, provenance, with_model)
        if refused is None:
            log.info(f"imported {run.rel} -> {name}")
        else:
            report.models_refused.append({"run": name.as_posix(), **refused})
            log.warning(f"imported {run.rel} -> {name} without its model: {refused['file']} "
                        f"{refused['reason']}")
        report.runs.append(target)
    return report
