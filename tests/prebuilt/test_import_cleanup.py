"""An import leaves nothing half-done beside its output: not on a refused archive, not on
SIGTERM, and a scratch folder left by a killed (SIGKILL) import is removed by the next one."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from askdagger_mnist.cli import fetch_results
from askdagger_mnist.settings import PAPER_VARIANTS
from conftest import REFERENCE_RESULTS
from test_bounded_reading import AS_LIMIT, npy_with_payload, shared_list_bomb

RUN_DIR = "r0.1_s0.9_uTrue_iTrue_b128_e5"
RUN = f"results_specificity/{RUN_DIR}/0/results.npy"


def _archive(path: Path, results_npy: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(results_npy, RUN)
    return path


def _run_cli(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_hostile_archive_through_the_cli_is_refused_and_leaves_nothing(tmp_path):
    bomb = npy_with_payload(tmp_path / "results.npy", shared_list_bomb())
    archive = _archive(tmp_path / "evil.zip", bomb)
    parent = tmp_path / "imported"
    parent.mkdir()
    out = parent / "evil"
    proc = _run_cli(
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({AS_LIMIT}, {AS_LIMIT}))\n"
        "from askdagger_mnist.cli.fetch_results import main\n"
        f"sys.exit(main(['import', '--archive', {str(archive)!r}, '--format', 'authors', "
        f"'--out', {str(out)!r}]))\n"
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "shared" in last and RUN in last, last
    assert list(parent.iterdir()) == []  # no output, no scratch folder


@pytest.mark.needs_reference
def test_sigterm_during_an_import_removes_its_scratch_folder(tmp_path):
    archive = _archive(tmp_path / "a.zip", REFERENCE_RESULTS / RUN)
    parent = tmp_path / "imported"
    parent.mkdir()
    out = parent / "authors"
    proc = _run_cli(
        "import os, signal, sys, time\n"
        "from askdagger_mnist.cli import fetch_results\n"
        "from askdagger_mnist.prebuilt import authors_format\n"
        "def stopped(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # as Snakemake does when a run is cancelled\n"
        "    time.sleep(30)\n"
        "authors_format.import_tree = stopped\n"
        f"sys.exit(fetch_results.main(['import', '--archive', {str(archive)!r}, '--format', "
        f"'authors', '--out', {str(out)!r}]))\n"
    )
    assert proc.returncode == 128 + 15, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.strip().splitlines()[-1].startswith("error: stopped by SIGTERM")
    assert list(parent.iterdir()) == []


@pytest.mark.needs_reference
def test_scratch_of_a_killed_import_is_removed_by_the_next_one(tmp_path):
    archive = _archive(tmp_path / "a.zip", REFERENCE_RESULTS / RUN)
    parent = tmp_path / "imported"
    out = parent / "authors"
    # what a SIGKILLed import leaves: its scratch folder, its lock no longer held
    dead = parent / ".authors.deadbeef.scratch"
    (dead / "zip" / "results_specificity").mkdir(parents=True)
    (dead / ".lock").touch()
    # an import running right now in another process holds its lock: kept
    live = parent / ".authors.live5678.scratch"
    live.mkdir()
    lock = os.open(live / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    other = parent / ".other.deadbeef.scratch"  # another output's: not this import's to judge
    other.mkdir()
    (other / ".lock").touch()
    try:
        done = fetch_results.cmd_import(archive, out, "authors", None, PAPER_VARIANTS,
                                        "sensitivity", 128, 5, False)
    finally:
        os.close(lock)
    assert done == [out / "specificity/sag/s0.9/rep0"]
    assert sorted(p.name for p in parent.iterdir()) == [".authors.live5678.scratch", ".other.deadbeef.scratch",
                                                         "authors"]


@pytest.mark.needs_reference
@pytest.mark.parametrize("in_the_way", ["file", "symlink"])
def test_an_import_replaces_a_file_or_link_at_its_output(tmp_path, in_the_way):
    """Imports always moved whatever sat at their output aside (into the scratch folder)."""
    archive = _archive(tmp_path / "a.zip", REFERENCE_RESULTS / RUN)
    parent = tmp_path / "imported"
    parent.mkdir()
    out, target = parent / "authors", tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("mine")
    if in_the_way == "file":
        out.write_text("left here by hand")
    else:
        out.symlink_to(target)
    done = fetch_results.cmd_import(archive, out, "authors", None, PAPER_VARIANTS, "sensitivity",
                                    128, 5, False)
    assert done == [out / "specificity/sag/s0.9/rep0"] and not out.is_symlink()
    assert [p.name for p in parent.iterdir()] == ["authors"]  # no scratch folder left
    assert [p.name for p in target.iterdir()] == ["keep"]  # what the link pointed to: untouched
