"""The cluster path on a real SLURM: a single-node cluster started by the tests.

1. The harness itself: a plain ``sbatch --gpus=1 -p gpu`` job runs on the node with the
   fake GPU, and two GPU jobs never overlap (one GPU GRES).
2. The smoke workflow with the cluster profile (``workflow/profiles/slurm-gpu``) overridden
   for the local partitions: every train job runs under SLURM in the gpu partition with a
   GPU requested; the figures are produced; a ``scancel`` of a running train job followed
   by a rerun resumes it from its checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from slurm_cluster import SlurmCluster, missing_programs

INSTALL_SCRIPT = REPO / ".ci" / "install-slurm.sh"


def _ensure_installed() -> None:
    """Install slurm-wlm/munge when missing; skip only when that truly cannot be done."""
    if not missing_programs():
        return
    if os.geteuid() != 0 or not Path("/usr/bin/apt-get").exists():
        pytest.skip(
            f"SLURM/munge not installed ({', '.join(missing_programs())}) and this user cannot "
            "apt-get install slurm-wlm munge"
        )
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True)
    if missing_programs():
        pytest.skip(
            "slurm-wlm/munge could not be installed by .ci/install-slurm.sh: "
            + (proc.stderr or proc.stdout).strip()[-500:]
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    _ensure_installed()
    # Unix socket paths are limited to 108 bytes: keep the cluster root short.
    root = Path(tmp_path_factory.mktemp("slurm"))
    c = SlurmCluster(root, cpus=2, gpus=1, min_job_age=300)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _wait_jobs_done(cluster: SlurmCluster, ids: list[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = {j["JobId"]: j for j in cluster.jobs() if j["JobId"] in ids}
        if len(jobs) == len(ids) and all(j["JobState"] == "COMPLETED" for j in jobs.values()):
            return jobs
        if any(j["JobState"] in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") for j in jobs.values()):
            raise AssertionError(f"a job did not complete: {jobs}\n{cluster.log_tail()}")
        time.sleep(0.5)
    raise AssertionError(f"jobs {ids} did not finish in {timeout}s: {cluster.jobs()}")


def test_gpu_jobs_run_one_at_a_time_on_the_fake_gpu(cluster, tmp_path):
    script = (
        'echo "start $(date +%s.%N)"; echo "partition=$SLURM_JOB_PARTITION"; '
        'echo "node=$SLURMD_NODENAME"; echo "gpus=${SLURM_JOB_GPUS:-none}"; '
        'echo "cuda=${CUDA_VISIBLE_DEVICES:-none}"; sleep 2; echo "end $(date +%s.%N)"'
    )
    ids = []
    for i in range(2):
        out = cluster.run(
            "sbatch", "--parsable", "--gpus=1", "-p", "gpu", "-J", f"smoke{i}",
            "-o", str(tmp_path / f"job{i}.out"), "--wrap", script,
        ).stdout.strip()
        ids.append(out.split(";")[0])
    jobs = _wait_jobs_done(cluster, ids)
    spans = []
    for i, job_id in enumerate(ids):
        assert jobs[job_id]["Partition"] == "gpu"
        assert jobs[job_id]["TresPerJob"] == "gres:gpu:1"
        lines = dict(
            line.split("=", 1) for line in (tmp_path / f"job{i}.out").read_text().splitlines()
            if "=" in line
        )
        assert lines["partition"] == "gpu"
        assert lines["node"] == "node1"
        words = (tmp_path / f"job{i}.out").read_text().split()
        spans.append((float(words[words.index("start") + 1]), float(words[words.index("end") + 1])))
    (s0, e0), (s1, e1) = sorted(spans)
    assert s1 >= e0 - 0.05, f"two --gpus=1 jobs overlapped on one GPU: {spans}"
