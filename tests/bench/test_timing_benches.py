"""The timing benchmarks at a tiny size: what they time is what they say they time.

- bench/full_run.py's swap table trains every configuration of every round (a run of the same
  seed already made by another configuration would be restored from its kept copy, and the
  table would time a restore);
- bench/oversubscription.py's Snakemake ways run the workflow as the README's command does and
  make the same runs as the train CLI run by hand.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import MNIST_ROOT, REPO

pytestmark = [pytest.mark.needs_mnist, pytest.mark.slow]


def bench(script: str, *args: str, timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_swap_table_trains_each_configuration_of_each_round():
    out = bench("full_run.py", "--swap-table", "--repeat", "2", "--components", "make_optimizer",
                "--max-steps", "6", "--data-root", str(MNIST_ROOT))
    assert "already holds this run" not in out
    assert out.count("run written to") == 4, out  # 2 rounds x (fast engine, swapped)
    loops = [float(s) for s in re.findall(r"\(loop (\d+\.\d+) s", out)]
    assert len(loops) == 4 and all(loop > 0 for loop in loops), out
    assert re.search(r"\| make_optimizer \| \d+\.\d+ \| \d+\.\d+ \|", out), out


def test_the_snakemake_ways_make_the_same_runs_as_the_train_cli():
    out = bench("oversubscription.py", "--runs", "2", "--max-steps", "4",
                "--ways", "snakemake-cores8,snakemake-cores2,two-unpinned",
                "--data-root", str(MNIST_ROOT))
    for way in ("snakemake-cores8", "snakemake-cores2", "two-unpinned"):
        assert re.search(rf"round 0  {way}\s+wall\s+\d+\.\d s\s+CPU\s+\d+\.\d s", out), out
    assert "every run is the same in every way and round" in out
