"""Helpers shared by the rules: paths, target lists, input functions, command-line flags.

Included first by the Snakefile, after the config is checked (askdagger_mnist.experiment.config). The
conventions shared with the package (the run directory layout, the s_des format, the modes)
are imported from it, not restated: the Snakefile puts the package's src/ first on sys.path,
and only its standard-library modules (naming, settings, config, data.mnist) are imported here, because
under --use-conda the environment running Snakemake itself may lack torch and numpy.
"""

import json
import re
import shlex
import sys
from pathlib import Path

from askdagger_mnist.experiment.config import ABLATIONS, train_conda_env, train_gpu_tag
from askdagger_mnist.data.mnist import TRAIN_FILES, raw_folder  # standard library only
from askdagger_mnist.experiment.naming import RUNS_DIR, run_subdir
from askdagger_mnist.experiment.naming import (
    format_s_des as fmt_s,
)  # 0.9 -> '0.9', as in run dirs
from askdagger_mnist.settings import (
    CONFIGURATION_FIELDS,
    MODES,
    RESULTS_VERSION,
    configuration_key,
)

REPO = Path(workflow.basedir)
ABLATION_MODE = "sensitivity"  # the ablation figures are defined in sensitivity mode
assert ABLATION_MODE in MODES, ABLATION_MODE
FIGURE_GROUPS = ("main", *ABLATIONS)
RUNS = RUNS_DIR
METRICS = "results/metrics"
LOGS = "results/logs"
BENCHMARKS = "results/benchmarks"
# What download_mnist produces: a record of the verified files, in the workflow's own tree. The
# user's files under mnist_root are never a rule's output, so Snakemake never deletes them.
MNIST_MANIFEST = "results/mnist.verified.json"
# The archives of compare_with, imported: the other side of a reproduction verdict.
COMPARE = "results/compare"
REPRODUCTION = "results/reproduction"

# Every shell command runs in bash strict mode with the repository's src/ first on
# PYTHONPATH, so `python -m askdagger_mnist.cli.<stage>` imports this checkout's code inside any
# environment (also the --use-conda ones, where the package is not installed).
# (Snakemake formats the prefix like a shell command: literal braces are doubled.)
_SRC = shlex.quote(str(REPO / "src")).replace("{", "{{").replace("}", "}}")
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={_SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


# ---- paths and targets ------------------------------------------------------------------------


def run_dir(mode, variant, s_des, rep):
    """A run's directory: naming.run_subdir under results/runs."""
    return f"{RUNS}/{run_subdir(mode, variant, s_des, rep)}"


def mnist_root(wildcards=None, output=None, input=None):
    """config's mnist_root, for params. As a function of output/input it is a derived param,
    which Snakemake leaves out of its params rerun trigger: moving the (MD5-verified) files to
    another root retrains nothing, and download_mnist does not re-run while its manifest
    exists (a re-run would hide the train jobs behind the ancient() manifest for that
    invocation). check_mnist_root says what to do when the root lacks the files."""
    return config["mnist_root"]


def mnist_download_command():
    """What download_mnist runs, with absolute paths: for messages."""
    root = shlex.quote(str(Path(config["mnist_root"]).absolute()))
    manifest = shlex.quote(str(Path(MNIST_MANIFEST).absolute()))
    return (
        f"python -m askdagger_mnist.cli.download_mnist --root {root} {mirror_flags()} "
        f"--require train --manifest {manifest}"
    )


def check_mnist_root():
    """Once the manifest exists, the training files it lists must be under mnist_root (at the
    verified size): otherwise say, before any job starts, which file is missing and the command
    that fetches it. A warning, not an error: runs already made need no MNIST."""
    manifest = Path(MNIST_MANIFEST)
    if not manifest.is_file():
        return  # download_mnist will check (and complete) the root
    try:
        files = json.loads(manifest.read_text())["files"]
        sizes = {name: int(files[name]["size"]) for name in TRAIN_FILES}
    except (OSError, ValueError, KeyError, TypeError):
        problem = f"{manifest} is unreadable or not download_mnist's"
    else:
        problem = None
        raw = raw_folder(config["mnist_root"])
        for name in reversed(TRAIN_FILES):  # the first one missing is named
            path = raw / name
            if not path.is_file() or path.stat().st_size != sizes[name]:
                problem = (
                    f"{path} is missing or differs from the file {manifest} verified"
                )
    if problem:
        print(
            f"warning: {problem}, so training jobs would fail: run "
            f"`{mnist_download_command()}` (it downloads only what is missing and rewrites "
            "the manifest; deleting the manifest instead would retrain every run), or point "
            "mnist_root at a folder holding MNIST/raw/train-*.gz.",
            file=sys.stderr,
        )


def group_settings(group):
    """(mode, variant) pairs of a figure group."""
    if group == "main":
        return [
            (mode, config["figures"]["main"]["variant"]) for mode in config["modes"]
        ]
    return [(ABLATION_MODE, v) for v in config["figures"][group]["variants"]]


def group_runs(group):
    """Run directories a figure group averages: its settings x s_des x repetitions."""
    return [
        run_dir(mode, variant, s, rep)
        for mode, variant in group_settings(group)
        for s in config["s_des"]
        for rep in range(config["repetitions"])
    ]


def sag_figure_run():
    """figures/sag.pdf shows SAG late in one run: sensitivity, the largest s_des, rep 0."""
    variant = config["figures"]["sag"]["variant"]
    return run_dir(ABLATION_MODE, variant, max(config["s_des"]), 0)


def all_runs():
    """Every configured run, each once (the main and ablation figures share the sag runs)."""
    runs = [r for group in FIGURE_GROUPS for r in group_runs(group)]
    runs.append(sag_figure_run())
    return list(dict.fromkeys(runs))


def final_targets():
    return [
        f"{METRICS}/runs.csv",
        f"{METRICS}/curves.csv.gz",
        "figures/mnist.pdf",
        *[f"figures/mnist_{a}.pdf" for a in ABLATIONS],
        *[
            f"results/tables/{a}.{ext}"
            for a in ABLATIONS
            for ext in ("csv", "md", "tex")
        ],
        "figures/sag.pdf",
        *(
            [
                "results/reproduction/verdict.csv",
                "results/reproduction/verdict.md",
                "figures/reproduction.pdf",
            ]
            if config["compare_with"]
            else []
        ),
    ]


def results_archive(wildcards):
    """The results_archives entry named by the {name} wildcard (rules of results.smk)."""
    return {a["name"]: a for a in config["results_archives"]}[wildcards.name]


# ---- reproduction (reproduction.smk) ----------------------------------------------------------


def planned_configurations():
    """Every configured run directory (all_runs) -> its configuration (configuration_key)."""
    # The run-wide settings, as the config names them (mode and s_des come from the run).
    shared = {name: config[name] for name in CONFIGURATION_FIELDS if name in config}
    found = {}
    for run in all_runs():
        mode, variant, s_dir = Path(run).parts[-4:-1]
        settings = {**config["variants"][variant], **shared, "mode": mode}
        found[run] = configuration_key({**settings, "s_des": float(s_dir[1:])})
    return found


def comparable_runs(wildcards):
    """The runs of ours whose configuration an imported archive holds (the checkpoint's list)."""
    listing = checkpoints.comparable_configurations.get().output.json
    wanted = {tuple(c) for c in json.loads(Path(listing).read_text())["configurations"]}
    return [run for run, key in planned_configurations().items() if key in wanted]


def comparison_dirs(wildcards=None):
    return [f"{COMPARE}/{name}" for name in config["compare_with"]]


def reproduction_flags():
    r = config["reproduction"]
    return (
        f"--margin-tracked {r['margins']['tracked']!r} --margin-others {r['margins']['others']!r}"
        f" --min-runs {r['min_runs']}"
        f" --curve-after-step {r['curve_after_step']}"
    )


def wildcard_alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


# ---- command-line flags -----------------------------------------------------------------------


def train_settings(wildcards):
    """Flags of every setting that changes a run's results (besides mode, s_des, rep,
    variant). Passed as params, so a changed setting re-runs the runs it affects."""
    v = config["variants"][wildcards.variant]
    flags = [
        f"--p-rand {v['p_rand']!r}",
        *([] if v["normalization"] else ["--no-normalization"]),
        *([] if v["imputation"] else ["--no-imputation"]),
        f"--batch-size {config['batch_size']}",
        f"--update-every {config['update_every']}",
        f"--mc-samples {config['mc_samples']}",
        f"--dropout {config['dropout']!r}",
        f"--n-min {config['n_min']}",
        f"--n-rep {config['n_rep']}",
        f"--seed-root {config['seed_root']}",
    ]
    if config["max_steps"] is not None:
        flags.append(f"--max-steps {config['max_steps']}")
    return " ".join(flags)


def mirror_flags():
    return " ".join(f"--mirror {shlex.quote(url)}" for url in config["mnist_mirrors"])


# After every helper is defined (the message names mirror_flags' flags).
check_mnist_root()
