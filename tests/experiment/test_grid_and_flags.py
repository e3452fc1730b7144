"""The experiment layer in-process: the grid of runs, the final targets, the flags the rules
pass and the MNIST-root check, on the checked config.yaml (what the Snakefile sees), with no
Snakemake started."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.cli.train import build_parser, settings_from_args
from askdagger_mnist.experiment import config as cfg
from askdagger_mnist.experiment.flags import mirror_flags, reproduction_flags, train_settings
from askdagger_mnist.experiment.grid import (
    all_runs, final_targets, group_runs, planned_configurations, results_archive, sag_figure_run,
)  # fmt: skip
from askdagger_mnist.experiment.mnist_check import mnist_root_warning
from askdagger_mnist.settings import RunSettings
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


def test_the_train_flags_are_read_back_by_the_train_cli_as_the_variant_settings():
    config = checked(max_steps=40)
    for variant, v in config["variants"].items():
        words = shlex.split(train_settings(config, variant))
        args = build_parser().parse_args(
            ["--mode", "sensitivity", "--s-des", "0.9", "--data-root", "x", "--out", "y", *words])
        assert settings_from_args(args) == RunSettings(
            mode="sensitivity", s_des=0.9, p_rand=v["p_rand"], normalization=v["normalization"],
            imputation=v["imputation"], steps=40)
    assert "--max-steps" not in train_settings(checked(), "sag")  # the whole stream


def test_every_planned_configuration_is_keyed_by_its_settings():
    config = checked(s_des=[0.9], repetitions=1)
    keys = planned_configurations(config)
    assert set(keys) == set(all_runs(config))
    assert len(set(keys.values())) == len(keys)  # each run its own configuration here


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
