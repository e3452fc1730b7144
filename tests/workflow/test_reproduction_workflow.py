"""The reproduction verdict through Snakemake: the six-plus-four reference runs of the original
code, zipped in the authors' layout and served over a local HTTP server as compare_with
archives, against a few short runs of ours trained on real MNIST."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MNIST_ROOT, REPO, FileServer, authors_zip

pytestmark = [pytest.mark.slow, pytest.mark.needs_mnist, pytest.mark.needs_reference]

PROFILE = REPO / "workflow" / "profiles" / "default"
TARGETS = ("results/reproduction/verdict.csv", "results/reproduction/verdict.md",
           "figures/reproduction.pdf")
CONFIG = {
    "mnist_root": str(MNIST_ROOT),  # read as is (the MNIST download has its own tests)
    "modes": ["sensitivity", "specificity", "success"],
    "s_des": [0.5, 0.9],  # theirs have s_des 0.9 only: 0.5 stays unmatched
    "repetitions": 3,
    "max_steps": 12,
    "checkpoint_every": 0,
    "figures": {"main": {"variant": "sag"}, "reg_ablation": {"variants": ["sag"]},
                "prand_ablation": {"variants": ["sag"]}, "sag": {"variant": "sag"}},
    "reproduction": {"curve_after_step": 5},
}


def snakemake(workdir: Path, *extra: str, targets=TARGETS) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--workflow-profile", str(PROFILE), "--cores", "2",
           "--configfile", str(workdir / "config.yaml"), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    proc.output = proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two archives in the authors' layout on a local HTTP server: sensitivity (6 runs), and
    specificity with success (2 runs each)."""
    folder = tmp_path_factory.mktemp("archives")
    authors_zip(folder / "ref_sensitivity.zip", modes=("sensitivity",))
    authors_zip(folder / "ref_others.zip", modes=("specificity", "success"))
    server = FileServer(folder)
    yield server.url
    server.close()


def workdir_with(tmp_path: Path, url: str, **changes) -> Path:
    config = {**CONFIG, "results_archives": [
        {"name": "ref_sensitivity", "url": f"{url}ref_sensitivity.zip", "format": "authors"},
        {"name": "ref_others", "url": f"{url}ref_others.zip", "format": "authors"},
    ], "compare_with": ["ref_sensitivity", "ref_others"], **changes}
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def test_verdict_figure_and_report_from_served_archives(served, tmp_path):
    workdir = workdir_with(tmp_path, served)
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.output[-5000:]
    table = pd.read_csv(workdir / TARGETS[0])
    matched = table[table["verdict"] != "unmatched"]
    # 3 modes at s_des 0.9 x 6 metrics, compared over the 12 steps both sides have
    assert len(matched) == 18 and set(matched["s_des"]) == {0.9} and set(matched["steps"]) == {12}
    assert matched.groupby("mode")["n_theirs"].first().to_dict() == {
        "sensitivity": 6, "specificity": 2, "success": 2}
    assert set(matched["n_ours"]) == {3} and matched["max_curve_diff"].notna().all()
    assert set(matched["verdict"]) <= {"equivalent", "different", "inconclusive"}
    assert set(matched.loc[matched["mode"] != "sensitivity", "verdict"]) == {"inconclusive"}
    # only the runs of ours the archives can compare were trained: s_des 0.5 was not
    assert not (table["verdict"] == "unmatched").any()
    assert (workdir / "results" / "reproduction" / "comparable.json").is_file()
    md = (workdir / TARGETS[1]).read_text()
    assert md.splitlines()[0].startswith(f"{(matched['tracked'] & (matched['verdict'] == 'equivalent')).sum()} of 3 configurations")
    assert "Theirs: ref_sensitivity + ref_others" in md
    assert (workdir / TARGETS[2]).read_bytes().startswith(b"%PDF-1.")
    # their runs live in a tree of their own, never among ours
    assert sorted(p.name for p in (workdir / "results" / "compare").iterdir()) == [
        "ref_others", "ref_sensitivity"]
    ours = sorted((workdir / "results" / "runs").glob("*/*/*/rep*"))
    assert len(ours) == 3 * 3 and {p.parent.name for p in ours} == {"s0.9"}

    again = snakemake(workdir)
    assert again.returncode == 0 and "Nothing to be done" in again.output, again.output[-3000:]

    report = tmp_path / "report.html"
    proc = snakemake(workdir, "--report", str(report))
    assert proc.returncode == 0, proc.output[-3000:]
    html = report.read_text()
    assert "verdict.csv" in html and "reproduction.pdf" in html
    assert "the whole interval lies inside" in html  # the caption says what equivalent means


def planned_jobs(output: str) -> dict[str, int]:
    """Snakemake's dry-run job table: rule -> count."""
    table = output[output.index("Job stats:"):]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M) if m[0] != "total"}


def test_the_readme_sequence_main_job_then_report_then_verdict(served, tmp_path):
    """As a user follows README.md: the main job, its report, then the verdict, which trains
    nothing more when the archives hold only configurations the main job made."""
    workdir = workdir_with(tmp_path, served, s_des=[0.9])
    main = snakemake(workdir, targets=("figures/mnist.pdf",))
    assert main.returncode == 0, main.output[-5000:]
    report = snakemake(workdir, "--report", str(tmp_path / "report.html"), targets=("figures/mnist.pdf",))
    assert report.returncode == 0, report.output[-3000:]
    assert "mnist.pdf" in (tmp_path / "report.html").read_text()
    plan = snakemake(workdir, "--dry-run")
    assert plan.returncode == 0, plan.output[-3000:]
    jobs = planned_jobs(plan.output)
    assert "train" not in jobs and jobs["comparable_configurations"] == 1, jobs
    verdict = snakemake(workdir)
    assert verdict.returncode == 0, verdict.output[-5000:]
    assert "train" not in planned_jobs(verdict.output), verdict.output[-3000:]
    assert "configurations equivalent on the tracked metric" in (workdir / TARGETS[1]).read_text()


def test_an_unknown_archive_name_stops_before_any_job(served, tmp_path):
    workdir = workdir_with(tmp_path, served, compare_with=["ref_sensitivity", "authors_sensitivty"])
    proc = snakemake(workdir, "--dry-run")
    assert proc.returncode != 0
    assert ("config key compare_with names archive 'authors_sensitivty', which is not an entry of "
            "results_archives (known: ref_sensitivity, ref_others): add it there or fix the name."
            ) in proc.output
