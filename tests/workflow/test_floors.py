"""The declared minimum versions are true: the oldest Snakemake and SLURM executor plugin that
pyproject.toml allows, installed into a throwaway virtualenv from the package index, parse
this workflow and plan it (`snakemake -n`) with each of its profiles, and the oldest Snakemake
runs a short sweep to every figure and table. (The kill-and-recover scenario runs on it too:
tests/workflow/test_recovery.py.)

(Profiles are named config.yaml: Snakemake reads profile.yaml only from 9.19 on, so with
profile.yaml this test fails on 9.0 with "no config.yaml found".)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import MNIST_ROOT, REPO
from snakemake_floor import PROFILES, SMOKE, SNAKEMAKE_FLOOR, as_tuple

pytestmark = pytest.mark.slow


def test_the_snakefile_requires_the_declared_floor():
    found = re.findall(r'min_version\("([0-9.]+)"\)', (REPO / "Snakefile").read_text())
    assert [as_tuple(v) for v in found] == [as_tuple(SNAKEMAKE_FLOOR)]


def test_every_profile_is_named_config_yaml():
    for folder in sorted(p for p in PROFILES.iterdir() if p.is_dir()):
        assert (folder / "config.yaml").is_file(), f"{folder} has no config.yaml"
        assert not (folder / "profile.yaml").exists(), f"{folder}: profile.yaml needs Snakemake >= 9.19"


def dry_run(venv: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [str(venv / "bin" / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory",
           str(workdir), "-n", "--configfile", str(SMOKE), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=workdir)


def test_the_floor_versions_plan_the_workflow_with_every_profile(floor_venv, tmp_path):
    version = subprocess.run([str(floor_venv / "bin" / "snakemake"), "--version"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert as_tuple(version) == as_tuple(SNAKEMAKE_FLOOR)
    # The default workflow profile (loaded by itself), then each cluster/workstation profile.
    profiles = [()] + [("--profile", str(p)) for p in sorted(PROFILES.iterdir())
                       if p.is_dir() and p.name != "default"]
    assert len(profiles) == 3
    for extra in profiles:
        proc = dry_run(floor_venv, tmp_path, *extra)
        out = proc.stdout + proc.stderr
        # (with slurm-gpu: the plugin loaded and accepted every key of the profile)
        assert proc.returncode == 0, f"{extra}: {out[-3000:]}"
        assert re.search(r"^train\s+14$", out, re.M), out[-2000:]


def test_the_floor_versions_plan_the_comparison_and_download_rules(floor_venv, tmp_path):
    (tmp_path / "cmp.yaml").write_text(yaml.safe_dump({
        "results_source": "download", "compare_with": ["authors_sensitivity"]}))
    proc = dry_run(floor_venv, tmp_path, str(tmp_path / "cmp.yaml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rule in ("fetch_archive", "import_archive", "import_comparison", "import_run",
                 "comparable_configurations", "reproduction_verdict", "plot_reproduction"):
        assert re.search(rf"^{rule}\s+\d+$", out, re.M), (rule, out[-2000:])


@pytest.mark.needs_mnist
def test_the_floor_snakemake_runs_a_short_sweep_to_every_figure_and_table(floor_venv, tmp_path):
    cmd = [str(floor_venv / "bin" / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory",
           str(tmp_path), "--cores", "2", "--configfile", str(SMOKE), "--config",
           f"mnist_root={MNIST_ROOT}", "max_steps=20"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert len(list((tmp_path / "results" / "runs").glob("*/*/s*/rep*/run.json"))) == 14
    for name in ("mnist.pdf", "mnist_reg_ablation.pdf", "mnist_prand_ablation.pdf", "sag.pdf"):
        assert (tmp_path / "figures" / name).read_bytes().startswith(b"%PDF-1."), name
    for table in ("reg_ablation", "prand_ablation"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / "results" / "tables" / f"{table}.{ext}").stat().st_size > 0
    again = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
