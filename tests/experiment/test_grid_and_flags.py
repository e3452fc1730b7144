"""The experiment layer in-process: the grid of runs, the final targets, the flags the rules
pass and the MNIST-root check, on the checked config.yaml (what the Snakefile sees), with no
Snakemake started."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.cli.train import build_parser, settings_from_args
from askdagger_mnist.experiment import config as cfg
from askdagger_mnist.experiment.flags import mirror_flags, reproduction_flags, settings_flags
from askdagger_mnist.experiment.grid import (
    all_run_keys, all_runs, comparable_runs, final_targets, group_runs, planned_configurations,
    results_archive, run_dir, sag_figure_run,
)  # fmt: skip
from askdagger_mnist.experiment.mnist_check import mnist_root_warning
from askdagger_mnist.experiment.naming import format_s_des as fmt_s, wildcard_alternatives
from askdagger_mnist.experiment.run_settings import run_settings
from askdagger_mnist.settings import STREAM_STEPS, RunSettings, configuration_key
from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def checked(**overrides) -> dict:
    config = {**yaml.safe_load((REPO / "config.yaml").read_text()), **overrides}
    cfg.check(config, SCHEMA)
    return config


def test_the_paper_grid_has_630_runs_270_of_them_in_the_main_figure():
    config = checked()
    runs = all_runs(config)
    assert len(runs) == len(set(runs)) == 630
    assert len(group_runs(config, "main")) == 270
    assert sag_figure_run(config) == f"results/runs/sensitivity/sag/s{max(config['s_des']):g}/rep0"
    assert sag_figure_run(config) in runs
    assert "figures/mnist.pdf" in final_targets(config)
    assert not any("reproduction" in t for t in final_targets(config))
    with_verdict = checked(compare_with=["authors_sensitivity"])
    assert "results/reproduction/verdict.csv" in final_targets(with_verdict)
    assert results_archive(config, "authors_sensitivity")["format"] == "authors"


def read_back(key, flags: str) -> RunSettings:
    """What the train CLI makes of the train rule's command for the run ``key``."""
    mode, variant, s_des, rep = key
    args = build_parser().parse_args(
        ["--mode", mode, "--variant", variant, "--s-des", fmt_s(s_des), "--rep", str(rep),
         "--data-root", "x", "--out", "y", *shlex.split(flags)])
    return settings_from_args(args)


@pytest.mark.parametrize("overrides", [
    {},  # the paper's settings, the whole stream
    {"max_steps": 40, "batch_size": 64, "update_every": 3, "mc_samples": 8, "dropout": 0.25,
     "n_min": 20, "n_rep": 4, "seed_root": 7, "s_des": [0.55, 0.9], "repetitions": 2},
])  # fmt: skip
def test_the_train_cli_reads_the_rule_flags_back_as_the_planned_settings(overrides):
    config = checked(**overrides)
    keys = all_run_keys(config)
    assert [run_dir(*k) for k in keys] == all_runs(config)
    for key in keys:
        planned = run_settings(config, *key)
        assert read_back(key, settings_flags(planned)) == planned


def test_the_whole_stream_is_passed_as_no_flag_however_the_config_says_it():
    by_null, by_count = checked(max_steps=None), checked(max_steps=STREAM_STEPS)
    key = all_run_keys(by_null)[0]
    assert run_settings(by_null, *key) == run_settings(by_count, *key)
    assert run_settings(by_null, *key).steps == STREAM_STEPS
    assert "--max-steps" not in settings_flags(run_settings(by_null, *key))
    assert "--max-steps 40" in settings_flags(run_settings(checked(max_steps=40), *key))


def test_every_planned_run_is_keyed_by_the_configuration_its_run_json_will_record():
    config = checked(s_des=[0.9], repetitions=1)
    planned = planned_configurations(config)
    assert list(planned) == all_runs(config)
    assert len(set(planned.values())) == len(planned)  # each run its own configuration here
    for key in all_run_keys(config):
        # run.json records the settings the train CLI read from the rule's flags.
        recorded = read_back(key, settings_flags(run_settings(config, *key))).to_dict()
        assert planned[run_dir(*key)] == configuration_key(recorded)


def test_reproduction_and_mirror_flags():
    config = checked(mnist_mirrors=["https://a.example/x y/"])
    assert mirror_flags(config) == "--mirror 'https://a.example/x y/'"
    r = config["reproduction"]
    assert reproduction_flags(config).split() == [
        "--margin-tracked", repr(r["margins"]["tracked"]), "--margin-others",
        repr(r["margins"]["others"]), "--min-runs", str(r["min_runs"]),
        "--curve-after-step", str(r["curve_after_step"])]


@pytest.mark.parametrize("damage, says", [
    ("none", None),
    ("missing", "MNIST/raw/train-labels-idx1-ubyte.gz is missing or differs"),
    ("manifest", "is unreadable or not download_mnist's"),
])  # fmt: skip
def test_the_mnist_root_warning_names_what_is_missing_and_the_command(tmp_path, damage, says):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {}
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes(b"x" * 10)
        files[name] = {"size": 10}
    manifest = tmp_path / "mnist.verified.json"
    manifest.write_text(json.dumps({"files": files}))
    if damage == "missing":
        (raw / "train-labels-idx1-ubyte.gz").unlink()
    if damage == "manifest":
        manifest.write_text("{")
    config = checked(mnist_root=str(tmp_path / "mnist"))
    warning = mnist_root_warning(config, str(manifest))
    if says is None:
        assert warning is None
    else:
        assert warning.startswith("warning: ") and says in warning, warning
        assert "python -m askdagger_mnist.cli.download_mnist --root" in warning
    assert mnist_root_warning(config, str(tmp_path / "absent.json")) is None


def test_a_wildcard_constraint_matches_its_names_and_nothing_else():
    config = checked()
    s_des = [fmt_s(s) for s in config["s_des"]]
    pattern = re.compile(wildcard_alternatives(s_des))
    assert all(pattern.fullmatch(s) for s in s_des)
    assert not pattern.fullmatch("0x9")  # the dot of 0.9 is literal
    assert not pattern.fullmatch("0.9/rep0") and not pattern.fullmatch("0.")
    variants = re.compile(wildcard_alternatives(config["variants"]))
    assert all(variants.fullmatch(v) for v in config["variants"]) and not variants.fullmatch("sa")


def test_the_verdict_asks_for_the_planned_runs_whose_configuration_the_archives_hold(tmp_path):
    config = checked(s_des=[0.5, 0.9], repetitions=2)
    planned = planned_configurations(config)
    # As `cli.reproduction configurations` lists them: the sag runs at s_des 0.9, in all modes.
    held = sorted({key for run, key in planned.items() if "/sag/s0.9/" in run})
    listing = tmp_path / "comparable.json"
    listing.write_text(json.dumps({"configurations": held}))  # tuples become JSON lists
    runs = comparable_runs(config, listing)
    assert runs == [run for run in all_runs(config) if "/sag/s0.9/" in run]
    assert len(runs) == len(config["modes"]) * 2
    listing.write_text(json.dumps({"configurations": []}))
    assert comparable_runs(config, listing) == []
