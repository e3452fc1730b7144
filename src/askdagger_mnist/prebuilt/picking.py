"""The download route's last step: the configured runs, from the imported archives (staging
folders ``results/imported/{name}``) into results/runs, each only as the run the config asks
for (``prebuilt.served``).

``check_all`` checks every configured run the archives hold before any is copied (the
workflow's check_imports), so that one that differs stops the workflow with results/runs
untouched; ``pick_run`` checks one run again and copies it (import_run). The config is the
workflow config's keys as JSON (``experiment.flags.config_flag``), over their defaults.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..data import rundir
from ..errors import UserError
from ..experiment.grid import all_run_keys
from ..experiment.naming import run_label
from ..experiment.run_settings import run_settings
from ..settings import CONFIG_DEFAULTS, RunSettings
from . import served

log = logging.getLogger(__name__)


def config_from_json(text: str | None) -> dict:
    """``--config``: config keys as a JSON object, over their defaults (settings.CONFIG_DEFAULTS)."""
    try:
        given = json.loads(text) if text else {}
    except ValueError as exc:
        raise UserError(f"--config is not valid JSON ({exc}): pass the config's keys as JSON.") from None
    if not isinstance(given, dict):
        raise UserError("--config is not a JSON object of config keys: pass e.g. '{\"max_steps\": 100}'.")
    return {**CONFIG_DEFAULTS, **given}


def wanted_settings(config: dict, mode: str, variant: str, s_des: float, rep: int) -> RunSettings:
    """The settings of the run the config asks for (experiment.run_settings.run_settings)."""
    try:
        return run_settings(config, mode, variant, s_des, rep)
    except KeyError as exc:
        raise UserError(f"--config has no {exc} for run {run_label(mode, variant, s_des, rep)}: "
                        "pass the config's variants.") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"--config asks for invalid settings ({exc}): pass the config's values.") from None


def offered_run(stagings: list[Path], config: dict, mode: str, variant: str, s_des: float,
                rep: int) -> served.Served | None:
    """The run the first staging folder that holds it offers, checked against the config's
    (a UserError when it differs); None when no folder holds it."""
    label = run_label(mode, variant, s_des, rep)
    staging = served.find_staging(stagings, label)
    if staging is None:
        return None
    return served.check_served(staging / label, staging.name, label,
                               wanted_settings(config, mode, variant, s_des, rep))


def check_all(stagings: list[Path], config: dict, out: Path) -> list[served.Served]:
    """Check every configured run the staging folders hold against the config, and only if all
    serve, write ``out``: where each comes from and the steps used. Runs that no folder holds
    are left to ``pick_run``, which names them when a target needs them."""
    found = []
    for key in all_run_keys(config):
        run = offered_run(stagings, config, *key)
        if run is not None:
            found.append(run)
    for line in served.first_steps_lines(found):
        log.info(line)
        print(line)  # the workflow logs stderr; this line also reaches the terminal
    rundir.write_json_atomic(Path(out), {"runs": [
        {"run": r.label, "archive": r.archive, "steps": r.steps, "steps_used": r.steps_used}
        for r in found]})
    log.info(f"{len(found)} configured runs checked in "
             f"{', '.join(str(s) for s in stagings) or 'nothing'}")
    return found


def pick_run(stagings: list[Path], mode: str, variant: str, s_des: float, rep: int, out: Path,
             config: dict) -> Path:
    """Write the run the first staging folder holds as ``out``, if it is the run ``config`` asks
    for (its first steps, if it is longer); otherwise one sentence, and nothing written."""
    run = offered_run(stagings, config, mode, variant, s_des, rep)
    if run is None:
        raise UserError(
            f"no downloaded archive provides run {run_label(mode, variant, s_des, rep)} (searched "
            f"{', '.join(str(s) for s in stagings) or 'nothing'}): add an archive with it to "
            "results_archives, leave it out of the sweep, or set results_source: train."
        )
    for line in served.first_steps_lines([run]):
        log.info(line)
    served.publish(run, Path(out))
    log.info(f"run {run.label} taken from archive {run.archive}")
    return Path(out)
