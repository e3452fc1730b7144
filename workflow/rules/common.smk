"""What the rules share. The experiment's logic (the run grid, targets, command-line flags, the
MNIST-root check) is the package's experiment/ layer, standard library only, imported here
from the checkout's src/ (the Snakefile puts it first on sys.path): under --use-conda the
environment running Snakemake may lack torch and numpy."""

import json
import shlex
import sys
from pathlib import Path

from askdagger_mnist.experiment.batches import leader, led_by
from askdagger_mnist.experiment.config import ABLATIONS, train_conda_env, train_gpu_tag
from askdagger_mnist.experiment.flags import (
    mirror_flags,
    reproduction_flags,
    settings_flags,
)
from askdagger_mnist.experiment.grid import (
    ARCHIVE_DIR, BENCHMARKS, COMPARE, FIGURE_GROUPS, IMPORTED, LOGS, METRICS, MNIST_MANIFEST,
    REPRODUCTION, RUNS,
    all_runs, run_dir, comparable_runs, final_targets, group_runs, planned_configurations,
    results_archive, sag_figure_run,
)  # fmt: skip
from askdagger_mnist.experiment.mnist_check import mnist_root_warning
from askdagger_mnist.experiment.naming import format_s_des as fmt_s  # 0.9 -> '0.9'
from askdagger_mnist.experiment.naming import REP_NUMBER_PATTERN, wildcard_alternatives
from askdagger_mnist.experiment.run_settings import run_settings
from askdagger_mnist.settings import MODES, RESULTS_VERSION

# Every shell command runs in bash strict mode with the repository's src/ first on
# PYTHONPATH, so `python -m askdagger_mnist.cli.<stage>` imports this checkout's code inside any
# environment (also the --use-conda ones, where the package is not installed).
# (Snakemake formats the prefix like a shell command: literal braces are doubled.)
_SRC = (
    shlex.quote(str(Path(workflow.basedir) / "src"))
    .replace("{", "{{")
    .replace("}", "}}")
)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={_SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


if warning := mnist_root_warning(config, MNIST_MANIFEST):
    print(warning, file=sys.stderr)


def batch_reps(config, w):
    """The repetitions the train job of ``w`` trains (runs_per_job; experiment/batches.py)."""
    return led_by(int(w.rep), config["repetitions"], config["runs_per_job"])


def train_runtime(config, w):
    """Minutes for the train job of ``w``: train_resources.runtime for each run it trains."""
    return config["train_resources"]["runtime"] * len(batch_reps(config, w))


def trained_by(config, w):
    """The run directory of the job that trains ``w``'s run with its batch, or none."""
    first = leader(int(w.rep), config["repetitions"], config["runs_per_job"])
    if first == int(w.rep):
        return []
    return [run_dir(w.mode, w.variant, w.s_des, first)]
