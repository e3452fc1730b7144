"""The command-line flags the rules pass, each kind written in one place: a training run's
settings (the train rule's params: a changed setting re-runs exactly the runs it affects),
the verdict's settings and the MNIST mirrors. Standard library only."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Iterable, Mapping

from ..settings import STREAM_STEPS, RunSettings


def settings_flags(settings: RunSettings) -> str:
    """The flags of every setting that changes a run's results, in the train CLI's spelling,
    but mode, s_des and rep, which the train rule passes from its wildcards. The train CLI reads
    them back into ``settings`` (tests/experiment/test_grid_and_flags.py binds the two). The
    stream length is passed only when it is not the whole stream."""
    flags = [
        f"--p-rand {settings.p_rand!r}",
        *([] if settings.normalization else ["--no-normalization"]),
        *([] if settings.imputation else ["--no-imputation"]),
        f"--batch-size {settings.batch_size}",
        f"--update-every {settings.update_every}",
        f"--mc-samples {settings.mc_samples}",
        f"--dropout {settings.dropout!r}",
        f"--n-min {settings.n_min}",
        f"--n-rep {settings.n_rep}",
        f"--seed-root {settings.seed_root}",
    ]
    if settings.steps != STREAM_STEPS:
        flags.append(f"--max-steps {settings.steps}")
    return " ".join(flags)


def config_flag(config: Mapping, keys: Iterable[str]) -> str:
    """``--config`` with the config's ``keys`` as JSON: fetch_results pick derives the settings
    of the run it imports from them (run_settings.RUN_CONFIG_KEYS), check also the configured
    runs (grid.SWEEP_CONFIG_KEYS). A rule parameter: changing one of them re-runs the rule."""
    return f"--config {shlex.quote(json.dumps({key: config[key] for key in keys}, sort_keys=True))}"


def reproduction_flags(config: Mapping) -> str:
    r = config["reproduction"]
    return (f"--margin-tracked {r['margins']['tracked']!r} "
            f"--margin-others {r['margins']['others']!r} --min-runs {r['min_runs']} "
            f"--curve-after-step {r['curve_after_step']}")


def mirror_flags(config: Mapping) -> str:
    return " ".join(f"--mirror {shlex.quote(url)}" for url in config["mnist_mirrors"])


def mnist_download_command(config: Mapping, manifest: str) -> str:
    """What download_mnist runs, with absolute paths: for messages."""
    root = shlex.quote(str(Path(config["mnist_root"]).absolute()))
    return (f"python -m askdagger_mnist.cli.download_mnist --root {root} {mirror_flags(config)} "
            f"--require train --manifest {shlex.quote(str(Path(manifest).absolute()))}")
