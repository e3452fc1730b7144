"""A run enters results/runs by import only as the run the config asks for: the settings its
run.json records (all of RunSettings, steps included), its results version and its arrays must
agree with the config, or the pick stops in one sentence naming the archive, the run and the
setting, and writes nothing. A longer run serves a shorter config with its first steps, saying
so (the verdict's rule, analysis/sides.py). Runs are made here, in both archive formats."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from askdagger_mnist.algorithm.metrics import whole_run_metrics
from askdagger_mnist.cli import fetch_results
from askdagger_mnist.data import rundir
from askdagger_mnist.data.invariants import run_problem
from askdagger_mnist.experiment.naming import run_subdir
from askdagger_mnist.prebuilt import bundle
from askdagger_mnist.settings import PAPER_VARIANTS, RESULTS_VERSION, STREAM_STEPS

from synthetic_runs import B, RUN, consistent_arrays, write_run

AUTHORS_RUN_DIR = "r0.1_s0.9_uTrue_iTrue_b128_e5"


def staged_bundle(tmp_path: Path, name: str = "mine") -> Path:
    """The runs below tmp_path/runs packed into a bundle and imported as archive ``name``."""
    packed = bundle.pack(tmp_path / "runs", tmp_path / f"{name}.zip") and tmp_path / f"{name}.zip"
    staging = tmp_path / "results" / "imported" / name
    fetch_results.cmd_import(packed, staging, "bundle", None, PAPER_VARIANTS, "sensitivity",
                             None, None, True)
    return staging


def pick(staging: Path, out: Path, config: dict | None = None, key=RUN) -> int:
    mode, variant, s_des, rep = key
    extra = ["--config", json.dumps(config)] if config is not None else []
    return fetch_results.main(["pick", "--staging", str(staging), "--mode", mode, "--variant", variant,
                               "--s-des", str(s_des), "--rep", str(rep), "--out", str(out), *extra])


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: "), err
    return err


def out_dir(tmp_path: Path, key=RUN) -> Path:
    return tmp_path / "results" / "runs" / run_subdir(*key)


# --- bundles ---------------------------------------------------------------------------------------


def test_a_bundled_run_with_the_configured_settings_is_picked_unchanged(tmp_path):
    src = write_run(tmp_path / "runs")
    staging = staged_bundle(tmp_path)
    out = out_dir(tmp_path)
    assert pick(staging, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["arrays.npz", "model.pt", "run.json"]
    for f in out.iterdir():
        assert f.read_bytes() == (src / f.name).read_bytes()


@pytest.mark.parametrize("setting, recorded, asked", [
    ("dropout", 0.2, "0.4"),
    ("seed_root", 3, "0"),
    ("mc_samples", 4, "16"),
    ("n_min", 20, "50"),
    ("p_rand", 0.2, "0.1"),
    ("imputation", False, "True"),
])
def test_a_bundled_run_made_with_another_setting_is_refused(tmp_path, capsys, setting, recorded, asked):
    write_run(tmp_path / "runs", **{setting: recorded})
    staging = staged_bundle(tmp_path)
    out = out_dir(tmp_path)
    assert pick(staging, out) == 1
    err = one_error(capsys)
    assert err.startswith("error: archive mine: run sensitivity/sag/s0.9/rep0 was made with "
                          f"{setting} {recorded}, but the config asks for {asked}"), err
    assert "nothing was imported" in err
    assert not (tmp_path / "results" / "runs").exists()  # not even a folder of it


def test_a_bundled_run_with_fewer_steps_than_the_config_asks_for_is_refused(tmp_path, capsys):
    """The probe: a 20-step bundle served a max_steps 40 config."""
    write_run(tmp_path / "runs", steps=20)
    staging = staged_bundle(tmp_path)
    out = out_dir(tmp_path)
    assert pick(staging, out, {"max_steps": 40}) == 1
    err = one_error(capsys)
    assert err.startswith("error: archive mine: run sensitivity/sag/s0.9/rep0 has 20 steps, but "
                          "the config asks for 40 (max_steps)"), err
    assert not out.exists()
    assert pick(staging, out) == 1  # the default: the whole stream, 468 steps
    assert "has 20 steps, but the config asks for 468" in one_error(capsys)
    assert pick(staging, out, {"max_steps": 20}) == 0


def test_a_bundled_run_whose_arrays_disagree_with_its_run_json_is_refused(tmp_path, capsys):
    """The probe: arrays of 10 steps where run.json says 20."""
    write_run(tmp_path / "runs", steps=20, array_steps=10)
    staging = staged_bundle(tmp_path)
    out = out_dir(tmp_path)
    assert pick(staging, out, {"max_steps": 20}) == 1
    err = one_error(capsys)
    assert err.startswith("error: archive mine: run sensitivity/sag/s0.9/rep0 holds 10 steps in "
                          "its arrays where its run.json says 20"), err
    assert "nothing was imported" in err and not out.exists()


def test_a_staged_run_that_breaks_an_invariant_is_refused_at_the_pick(tmp_path, capsys):
    """A staging folder altered after its import: the pick checks the invariants again."""
    write_run(tmp_path / "runs")
    staging = staged_bundle(tmp_path)
    run = staging / run_subdir(*RUN)
    arrays = dict(rundir.read_arrays(run))
    arrays["r"] = -arrays["r"]
    rundir.save_npz(run / rundir.ARRAYS_FILE, arrays)
    out = out_dir(tmp_path)
    assert pick(staging, out) == 1
    err = one_error(capsys)
    assert err.startswith("error: archive mine: run sensitivity/sag/s0.9/rep0 breaks an invariant "
                          "every run satisfies: its rewards r do not follow from q and c"), err
    assert not out.exists()


def test_a_bundled_run_of_another_results_version_is_refused(tmp_path, capsys):
    write_run(tmp_path / "runs", info_changes={"results_version": RESULTS_VERSION - 1})
    staging = staged_bundle(tmp_path)
    out = out_dir(tmp_path)
    assert pick(staging, out) == 1
    err = one_error(capsys)
    assert err.startswith(f"error: archive mine: run sensitivity/sag/s0.9/rep0 was made with "
                          f"results version {RESULTS_VERSION - 1}, but this code's is "
                          f"{RESULTS_VERSION}"), err
    assert not out.exists()


def test_a_bundled_run_of_ours_without_a_results_version_is_refused_as_an_older_one(
        tmp_path, capsys):  # fmt: skip
    """Our runs record the version of the code that made them; one that records none was made
    before run.json recorded it (or its record was removed): not this version's. Only the
    authors' runs, whose code has no results version, record none and serve (below)."""
    src = write_run(tmp_path / "runs")
    info = rundir.read_info(src)
    del info["results_version"]
    (src / rundir.RUN_FILE).write_text(rundir.json_text(info))
    out = out_dir(tmp_path)
    assert pick(staged_bundle(tmp_path), out) == 1
    err = one_error(capsys)
    assert err.startswith(f"error: archive mine: run sensitivity/sag/s0.9/rep0 was made with an "
                          f"older results version (its run.json records none), but this code's is "
                          f"{RESULTS_VERSION}"), err
    assert not out.exists()


def test_check_refuses_every_pick_when_one_configured_run_mismatches(tmp_path, capsys):
    """``check`` (the workflow's check_imports) looks at every configured run the archives
    hold before any is copied: one mismatch, and no checked record is written."""
    write_run(tmp_path / "runs", key=("sensitivity", "sag", 0.9, 0))
    write_run(tmp_path / "runs", key=("sensitivity", "sag", 0.9, 1), dropout=0.5)
    staging = staged_bundle(tmp_path)
    config = {"modes": ["sensitivity"], "s_des": [0.9], "repetitions": 2,
              "figures": {"main": {"variant": "sag"}, "reg_ablation": {"variants": ["sag"]},
                          "prand_ablation": {"variants": ["sag"]}, "sag": {"variant": "sag"}}}
    record = tmp_path / "results" / "imported.checked.json"
    assert fetch_results.main(["check", "--staging", str(staging), "--config", json.dumps(config),
                               "--out", str(record)]) == 1
    err = one_error(capsys)
    assert err.startswith("error: archive mine: run sensitivity/sag/s0.9/rep1 was made with dropout "
                          "0.5, but the config asks for 0.4"), err
    assert not record.exists()
    assert fetch_results.main(["check", "--staging", str(staging), "--config",
                               json.dumps({**config, "repetitions": 1}), "--out", str(record)]) == 0
    assert json.loads(record.read_text())["runs"] == [
        {"run": "sensitivity/sag/s0.9/rep0", "archive": "mine", "steps": STREAM_STEPS,
         "steps_used": STREAM_STEPS}]


# --- the authors' runs -----------------------------------------------------------------------------


def authors_results(steps: int, seed: int) -> dict:
    arrays = consistent_arrays(steps, seed)
    raw = {k: arrays[k].astype(float) for k in ("u", "k", "g", "c", "q", "q_a", "r")}
    return {**raw, "train_subset": list(arrays["train_idx"])}


@pytest.fixture
def authors_staging(tmp_path) -> Path:
    """Two runs of 468 steps in the authors' layout, zipped and imported as authors_sensitivity."""
    archive = tmp_path / "authors_sensitivity.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for rep in (0, 1):
            npy = tmp_path / f"results{rep}.npy"
            np.save(npy, authors_results(STREAM_STEPS, seed=rep), allow_pickle=True)  # their format
            zf.write(npy, f"results_sensitivity/{AUTHORS_RUN_DIR}/{rep}/results.npy")
    staging = tmp_path / "results" / "imported" / "authors_sensitivity"
    fetch_results.cmd_import(archive, staging, "authors", None, PAPER_VARIANTS, "sensitivity",
                             128, 5, True)
    return staging


def test_the_authors_runs_serve_the_paper_s_settings(authors_staging, tmp_path):
    assert pick(authors_staging, out_dir(tmp_path)) == 0


@pytest.mark.parametrize("config, setting, recorded, asked", [
    ({"mc_samples": 4}, "mc_samples", 16, "4"),
    ({"dropout": 0.2}, "dropout", 0.4, "0.2"),
    ({"n_rep": 5}, "n_rep", 10, "5"),
])
def test_the_authors_runs_are_refused_for_a_setting_they_never_varied(
        authors_staging, tmp_path, capsys, config, setting, recorded, asked):
    """The probe: the authors' 16-pass runs served an mc_samples 4 config."""
    out = out_dir(tmp_path)
    assert pick(authors_staging, out, {"max_steps": 100, **config}) == 1
    err = one_error(capsys)
    assert err.startswith(f"error: archive authors_sensitivity: run sensitivity/sag/s0.9/rep0 was made "
                          f"with {setting} {recorded}, but the config asks for {asked}"), err
    assert "the authors' code always used" in err and not out.exists()


def test_a_longer_run_serves_a_shorter_config_with_its_first_steps_and_says_so(
        authors_staging, tmp_path, caplog):
    """The verdict's rule: the first N steps of a longer run are an N-step run."""
    out = out_dir(tmp_path)
    with caplog.at_level(logging.INFO, logger="askdagger_mnist"):
        assert pick(authors_staging, out, {"max_steps": 100}) == 0
    assert ("archive authors_sensitivity: run sensitivity/sag/s0.9/rep0 has 468 steps; its first "
            "100 are used (the config's max_steps)") in caplog.text
    whole = rundir.read_arrays(authors_staging / run_subdir(*RUN))
    first = rundir.read_arrays(out)
    n = 100 * B
    for name in ("u", "k", "g", "c", "r", "q", "q_a"):
        np.testing.assert_array_equal(first[name], whole[name][:n], err_msg=name)
    np.testing.assert_array_equal(first["train_idx"], whole["train_idx"][: int(whole["q"][:n].sum())])
    assert run_problem(first, B) is None
    info = rundir.read_info(out)
    assert info["settings"]["steps"] == 100 and info["n_steps"] == 100
    assert info["metrics"]["query_rate"] == whole_run_metrics(whole["c"][:n], whole["q"][:n])["query_rate"]
    assert info["first_steps_of"]["steps"] == STREAM_STEPS
    assert info["first_steps_of"]["archive"] == "authors_sensitivity"
    assert not (out / rundir.MODEL_FILE).exists()  # the model after 468 steps is not this run's
