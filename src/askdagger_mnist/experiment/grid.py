"""The experiment's grid: which runs each figure needs, every run once, the workflow's final
targets and where each kind of output lives. Pure functions of the checked config (the
Snakefile's ``config``); standard library only, so the Snakefile imports them and tests call
them in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

from ..settings import ABLATION_MODE, configuration_key
from .config_checks import ABLATIONS
from .naming import RUNS_DIR, run_subdir
from .run_settings import run_settings

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
# Prebuilt results: the archives fetched, and each one's runs imported (rules/results.smk).
ARCHIVE_DIR = "resources/archives"
IMPORTED = "results/imported"
# Every folder the rules write in (with the folders above them), relative to the working
# directory: the config check refuses a link to nothing there before any job starts.
OUTPUT_FOLDERS = (RUNS, METRICS, LOGS, BENCHMARKS, COMPARE, REPRODUCTION, IMPORTED, ARCHIVE_DIR,
                  "results/tables", "figures")


def run_dir(mode: str, variant: str, s_des, rep) -> str:
    """A run's directory: naming.run_subdir under results/runs."""
    return f"{RUNS}/{run_subdir(mode, variant, s_des, rep)}"


def group_settings(config: Mapping, group: str) -> list[tuple[str, str]]:
    """(mode, variant) pairs of a figure group."""
    if group == "main":
        return [(mode, config["figures"]["main"]["variant"]) for mode in config["modes"]]
    return [(ABLATION_MODE, v) for v in config["figures"][group]["variants"]]


def run_keys(modes: Iterable[str], variants: Iterable[str], s_des: Iterable[float],
             reps: int) -> list[tuple[str, str, float, int]]:
    """(mode, variant, s_des, rep) of every run of modes x variants x s_des x repetitions: the
    runs a figure averages (also as the plot command is told them)."""
    return [(mode, variant, float(s), rep)
            for mode in modes for variant in variants for s in s_des for rep in range(reps)]


def group_run_keys(config: Mapping, group: str) -> list[tuple[str, str, float, int]]:
    """The runs a figure group averages: its settings x s_des x repetitions."""
    return [key for mode, variant in group_settings(config, group)
            for key in run_keys([mode], [variant], config["s_des"], config["repetitions"])]


def group_runs(config: Mapping, group: str) -> list[str]:
    """Their run directories."""
    return [run_dir(*key) for key in group_run_keys(config, group)]


def sag_figure_key(config: Mapping) -> tuple[str, str, float, int]:
    """figures/sag.pdf shows SAG late in one run: sensitivity, the largest s_des, rep 0."""
    return (ABLATION_MODE, config["figures"]["sag"]["variant"], float(max(config["s_des"])), 0)


def sag_figure_run(config: Mapping) -> str:
    return run_dir(*sag_figure_key(config))


# The config keys all_run_keys reads, besides variants (for the run settings: RUN_CONFIG_KEYS).
SWEEP_CONFIG_KEYS = ("modes", "figures", "s_des", "repetitions")


def all_run_keys(config: Mapping) -> list[tuple[str, str, float, int]]:
    """Every configured run, each once (the main and ablation figures share the sag runs)."""
    keys = [k for group in FIGURE_GROUPS for k in group_run_keys(config, group)]
    keys.append(sag_figure_key(config))
    return list(dict.fromkeys(keys))


def all_runs(config: Mapping) -> list[str]:
    return [run_dir(*key) for key in all_run_keys(config)]


def final_targets(config: Mapping) -> list[str]:
    verdict = [f"{REPRODUCTION}/verdict.csv", f"{REPRODUCTION}/verdict.md",
               "figures/reproduction.pdf"]
    return [
        f"{METRICS}/runs.csv", f"{METRICS}/curves.csv.gz", "figures/mnist.pdf",
        *[f"figures/mnist_{a}.pdf" for a in ABLATIONS],
        *[f"results/tables/{a}.{ext}" for a in ABLATIONS for ext in ("csv", "md", "tex")],
        "figures/sag.pdf",
        *(verdict if config["compare_with"] else []),
    ]


def planned_configurations(config: Mapping) -> dict[str, tuple]:
    """Every configured run directory (all_runs) -> its configuration (configuration_key)."""
    return {run_dir(*key): configuration_key(run_settings(config, *key).to_dict())
            for key in all_run_keys(config)}


def comparable_runs(config: Mapping, listing) -> list[str]:
    """The planned runs whose configuration an imported archive holds: those the listing names
    (the JSON that ``cli.reproduction configurations`` writes, the workflow's checkpoint)."""
    wanted = {tuple(c) for c in json.loads(Path(listing).read_text())["configurations"]}
    return [run for run, key in planned_configurations(config).items() if key in wanted]


def results_archive(config: Mapping, name: str) -> Mapping:
    """The results_archives entry called ``name``."""
    return {a["name"]: a for a in config["results_archives"]}[name]
