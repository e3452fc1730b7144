"""bench/side_by_side.py, a workflow command at two commits back to back: each commit runs in a
fresh clone of its own (its Snakefile, profile and package), the report gives both commands'
times and checks the runs both made, and what cannot be measured stops in one sentence."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import MNIST_ROOT, REPO

SCRIPT = REPO / "bench" / "side_by_side.py"
RUN = "results/runs/sensitivity/sag/s0.9/rep0"


def side_by_side(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=REPO)


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_two_commits_run_in_their_own_clones_and_their_runs_are_compared(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("this checkout is no git repository: bench/side_by_side.py clones its commits")
    head = head.stdout.strip()
    done = side_by_side("--baseline", "HEAD", "--candidate", head, "--target", RUN,
                        "--cores", "1", "--config", "max_steps=3", "--data-root", str(MNIST_ROOT),
                        "--scratch", str(tmp_path / "scratch"), "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["commits"] == {"baseline": head, "candidate": head}
    rows = result["rows"]
    assert [row["commit"] for row in rows] == ["baseline", "candidate"]
    for row in rows:
        assert (row["exit_status"], row["targets_made"], row["runs"]) == (0, True, 1)
        assert row["wall_s"] > 0 and row["cpu_s"] > 0
        clone = tmp_path / "scratch" / f"round1-{row['commit']}"
        # The command ran in the clone: its config.yaml, its results folder.
        assert f"Config file {clone}/config.yaml" in (tmp_path / "scratch" / f"{clone.name}.log").read_text()
        assert (clone / RUN / "run.json").is_file()
        assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True,
                              text=True).stdout.strip() == head
    assert result["comparisons"] == [{"compared": 1, "differing": []}]
    assert "| 1 | " in done.stdout and "1 runs made by both, 0 differing" in done.stdout


@pytest.mark.parametrize("args, phrase", [
    (["--baseline", "no-such-commit"], "'no-such-commit' is no commit of"),
    (["--baseline", "HEAD", "--rounds", "0"], "--rounds must be at least 1, got 0."),
    (["--baseline", "HEAD", "--data-root", "/nonexistent"], "holds no MNIST/raw folder"),
])
def test_what_cannot_be_measured_stops_in_one_sentence(args, phrase):
    done = side_by_side(*args)
    assert done.returncode != 0 and phrase in done.stderr
    assert done.stderr.strip().count("\n") == 0
