"""The oldest Snakemake and SLURM executor plugin that pyproject.toml allows (the floors), and
their installation into a throwaway virtualenv (tests/conftest.py's floor_venv fixture)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from data_sources import REPO

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


def install_floor(venv: Path) -> None:
    """Snakemake's and the plugin's floors, installed from the package index into a new
    virtualenv (asserting that they install together)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", f"snakemake=={SNAKEMAKE_FLOOR}",
         f"snakemake-executor-plugin-slurm=={PLUGIN_FLOOR}"],
        capture_output=True, text=True, timeout=900,
    )
    assert pip.returncode == 0, f"the declared floors do not install together:\n{pip.stderr[-3000:]}"
