"""results_source: download through Snakemake: a bundle's runs become ours only as the runs the
config asks for. One run made with another dropout stops the workflow before any run is copied
(results/runs untouched, no figure); runs longer than max_steps serve with their first steps,
and the terminal says so. The bundles are made up here (tests/synthetic_runs.py): no MNIST."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from askdagger_mnist.data import rundir
from askdagger_mnist.prebuilt import bundle

from conftest import REPO
from synthetic_runs import write_run
from test_mnist_workflow import NEWEST, head  # noqa: F401 (head: a fixture, newest and floor)

pytestmark = pytest.mark.slow

SAG_ONLY = {"main": {"variant": "sag"}, "reg_ablation": {"variants": ["sag"]},
            "prand_ablation": {"variants": ["sag"]}, "sag": {"variant": "sag"}}


def workdir_with_bundle(tmp_path: Path, run_changes: dict[int, dict], max_steps: int) -> Path:
    """A working directory whose config downloads one bundle (file://) of sensitivity/sag/s0.9
    runs rep0 and rep1, each made with the paper's settings but ``run_changes[rep]``."""
    for rep in (0, 1):
        write_run(tmp_path / "made", key=("sensitivity", "sag", 0.9, rep), **run_changes.get(rep, {}))
    archive = tmp_path / "mine.zip"
    bundle.pack(tmp_path / "made", archive)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump({
        "results_source": "download",
        "results_archives": [{"name": "mine", "url": archive.as_uri(), "sha256": None,
                              "format": "bundle"}],
        "modes": ["sensitivity"], "s_des": [0.9], "repetitions": 2, "max_steps": max_steps,
        "figures": SAG_ONLY,
    }))
    return workdir


def snakemake(workdir: Path, target: str = "figures/mnist.pdf", extra=(),
              head=NEWEST) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*head, target, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1",
         "--configfile", str(workdir / "config.yaml"), *extra],
        capture_output=True, text=True, timeout=600)
    proc.output = proc.stdout + proc.stderr
    return proc


def test_a_bundled_run_with_another_setting_stops_the_workflow_before_any_run_is_copied(tmp_path):
    workdir = workdir_with_bundle(tmp_path, {1: {"steps": 6, "dropout": 0.5}, 0: {"steps": 6}},
                                  max_steps=6)
    proc = snakemake(workdir)
    assert proc.returncode == 1, proc.output[-3000:]
    assert ("error: archive mine: run sensitivity/sag/s0.9/rep1 was made with dropout 0.5, but the "
            "config asks for 0.4") in proc.output, proc.output[-3000:]
    assert not (workdir / "results" / "runs").exists()  # not even rep0, which matches
    assert not (workdir / "figures" / "mnist.pdf").exists()


def test_longer_bundled_runs_serve_with_their_first_steps_and_the_terminal_says_so(tmp_path):
    workdir = workdir_with_bundle(tmp_path, {0: {"steps": 8}, 1: {"steps": 8}}, max_steps=6)
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.output[-3000:]
    assert ("archive mine: 2 runs of 8 steps; the first 6 steps of each are used (the config's "
            "max_steps)") in proc.stdout, proc.output[-3000:]
    for rep in (0, 1):
        run = workdir / "results" / "runs" / "sensitivity" / "sag" / "s0.9" / f"rep{rep}"
        info = rundir.read_info(run)
        assert info["settings"]["steps"] == 6 and info["first_steps_of"]["steps"] == 8
        assert len(rundir.read_arrays(run)["u"]) == 6 * 128
    assert (workdir / "figures" / "mnist.pdf").read_bytes().startswith(b"%PDF-1.")


def test_a_new_download_limit_fetches_nothing_again(tmp_path, head):
    """max_download_mib only bounds a download: on the declared floor as on the newest
    Snakemake, a fetched archive is not fetched again when it changes. (On 9.0.1 it was a
    param of fetch_archive, a function of output, which that version counts as changed.)"""
    workdir = workdir_with_bundle(tmp_path, {}, max_steps=6)
    archive = "resources/archives/mine.zip"
    proc = snakemake(workdir, archive, head=head)
    assert proc.returncode == 0, proc.output[-3000:]
    dry = snakemake(workdir, archive, ("--dry-run", "--config", "max_download_mib=8"), head=head)
    assert dry.returncode == 0 and "Nothing to be done" in dry.output, dry.output[-3000:]
