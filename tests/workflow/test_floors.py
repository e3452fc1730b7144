"""The declared minimum versions are true: the oldest Snakemake and SLURM executor plugin that
pyproject.toml allows, installed into a throwaway virtualenv from the package index, parse
this workflow and plan it (`snakemake -n`) with each of its profiles.

(Profiles are named config.yaml: Snakemake reads profile.yaml only from 9.19 on, so with
profile.yaml this test fails on 9.0 with "no config.yaml found".)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from data_sources import index_reachable

pytestmark = pytest.mark.slow

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROFILES = REPO / "workflow" / "profiles"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"


def declared_floor(requirement_prefix: str, requirements: list[str]) -> str:
    for req in requirements:
        m = re.fullmatch(rf"{re.escape(requirement_prefix)}(\[[^\]]*\])?>=([0-9.]+)", req.replace(" ", ""))
        if m:
            return m.group(2)
    raise AssertionError(f"no floor declared for {requirement_prefix} in {requirements}")


SNAKEMAKE_FLOOR = declared_floor("snakemake", PYPROJECT["project"]["dependencies"])
PLUGIN_FLOOR = declared_floor("snakemake-executor-plugin-slurm",
                              PYPROJECT["project"]["optional-dependencies"]["slurm"])


def as_tuple(version: str) -> tuple[int, ...]:
    parts = [int(x) for x in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def test_the_snakefile_requires_the_declared_floor():
    found = re.findall(r'min_version\("([0-9.]+)"\)', (REPO / "Snakefile").read_text())
    assert [as_tuple(v) for v in found] == [as_tuple(SNAKEMAKE_FLOOR)]


def test_every_profile_is_named_config_yaml():
    for folder in sorted(p for p in PROFILES.iterdir() if p.is_dir()):
        assert (folder / "config.yaml").is_file(), f"{folder} has no config.yaml"
        assert not (folder / "profile.yaml").exists(), f"{folder}: profile.yaml needs Snakemake >= 9.19"


@pytest.fixture(scope="module")
def floor_venv(tmp_path_factory) -> Path:
    """Snakemake's and the plugin's floors, installed from the package index (skips, saying
    why, when the index cannot be reached)."""
    reachable, why = index_reachable()
    if not reachable:
        pytest.skip(why)
    venv = tmp_path_factory.mktemp("floor") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", f"snakemake=={SNAKEMAKE_FLOOR}",
         f"snakemake-executor-plugin-slurm=={PLUGIN_FLOOR}"],
        capture_output=True, text=True, timeout=900,
    )
    assert pip.returncode == 0, f"the declared floors do not install together:\n{pip.stderr[-3000:]}"
    return venv


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


def test_on_the_floor_a_recovery_it_cannot_do_is_one_sentence_once(floor_venv, tmp_path):
    """Where Snakemake lacks what recovery.smk reads (before 9.17), a directory that ran before
    gets one sentence, once, not an ImportError printed twice."""
    (tmp_path / ".snakemake").mkdir()
    run = tmp_path / "results" / "runs" / "sensitivity" / "sag" / "s0.9" / "rep0"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "arrays.npz").write_bytes(b"")
    proc = dry_run(floor_venv, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    notes = [line for line in out.splitlines() if line.startswith("Note: finished runs")]
    assert notes == ["Note: finished runs a stopped Snakemake had not recorded were not checked "
                     "(this Snakemake lacks the records it needs); --rerun-incomplete trains such "
                     "runs again."], out[-3000:]
    assert "Traceback" not in out and "ImportError" not in out
