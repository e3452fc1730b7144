"""The cluster path on a real SLURM: a single-node cluster started by the tests.

1. The harness itself: a plain ``sbatch --gpus=1 -p gpu`` job runs on the node with the
   fake GPU, and two GPU jobs never overlap (one GPU GRES).
2. The smoke workflow (one s_des) with the cluster profile (``workflow/profiles/slurm-gpu``)
   made into a site profile for the local partitions, as docs/cluster.md says: every train
   job runs under SLURM in the gpu partition with a GPU requested, download/aggregation/plots
   stay local, the figures and tables are produced.
3. One train job through ``scancel`` (resubmitted with grown resources, resumed from its
   checkpoint) and a killed Snakemake head (orphan found and cancelled by run ID, unlock,
   rerun resumed from the newer checkpoint).

The cluster has no accounting database, so the site profile uses ``slurm-status-command:
squeue``; ``cluster`` is module-scoped (started once, stopped by PID also on failure).
"""

from __future__ import annotations

import json
import os
import re
import signal
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


# ---- the workflow on the cluster ------------------------------------------------------------

PROFILE = REPO / "workflow" / "profiles" / "slurm-gpu" / "profile.yaml"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
LOCAL_PARTITIONS = {"<cpu-partition>": "cpu", "<gpu-partition>": "gpu"}
# Only what a site without an accounting database must add, and faster polling for the test.
SITE_SETTINGS = {
    "slurm-status-command": "squeue",  # without slurmdbd, sacct never sees jobs finish
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,
}


def site_profile(directory: Path) -> Path:
    """Our own profile derived from the repository's, as docs/cluster.md tells users to make
    one: the placeholders replaced by this cluster's partitions, plus the site settings."""
    import yaml

    text = PROFILE.read_text()
    for placeholder, value in LOCAL_PARTITIONS.items():
        assert placeholder in text, f"{PROFILE} lost its placeholder {placeholder}"
        text = text.replace(placeholder, value)
    profile = yaml.safe_load(text)
    leftover = [line for line in yaml.safe_dump(profile).splitlines() if "<" in line]
    assert not leftover, f"placeholders left in the profile: {leftover}"
    profile.update(SITE_SETTINGS)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "profile.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


def snakemake_cmd(workdir: Path, profile: Path, *extra: str) -> list[str]:
    return [
        "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--profile", str(profile), "--configfile", str(SMOKE), *extra,
    ]


def train_jobs(cluster: SlurmCluster) -> dict[str, dict]:
    return {j["JobId"]: j for j in cluster.jobs() if j.get("Comment", "").startswith("rule_train")}


@pytest.fixture
def slurm_workdir(cluster, tmp_path, mnist_mirror):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    profile = site_profile(tmp_path / "site-profile")
    return workdir, profile, [f"mnist_mirrors={mnist_mirror}"]


@pytest.mark.slow
def test_smoke_workflow_trains_on_the_gpu_partition(cluster, slurm_workdir):
    workdir, profile, config = slurm_workdir
    before = set(train_jobs(cluster))
    t0 = time.monotonic()
    proc = subprocess.run(
        # One desired value of the smoke preset: 7 train jobs (3 modes + 4 ablation variants)
        # instead of 14, and every figure and table; the jobs queue for the one GPU.
        snakemake_cmd(workdir, profile, "--config", *config, "s_des=0.9"),
        env=cluster.env(), cwd=workdir, capture_output=True, text=True, timeout=600,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:] + "\n" + cluster.log_tail()

    # Every run of the preset was trained by a SLURM job in the gpu partition with one GPU.
    runs = sorted((workdir / "results" / "runs").glob("*/*/s*/rep*/run.json"))
    assert len(runs) == 7, [str(r) for r in runs]
    jobs = {k: v for k, v in train_jobs(cluster).items() if k not in before}
    seen = set()
    for path in runs:
        record = json.loads(path.read_text())["slurm"]
        assert record is not None, f"{path} was not trained under SLURM"
        assert record["partition"] == "gpu", record
        assert record["node"] == "node1", record
        assert record["job_id"] in jobs, (record, sorted(jobs))
        job = jobs[record["job_id"]]
        assert job["Partition"] == "gpu" and job["TresPerJob"] == "gres:gpu:1", job
        assert job["JobState"] == "COMPLETED", job
        if cluster.gpus_indexed:
            assert record["cuda_visible_devices"] == "0", record
        seen.add(record["job_id"])
    assert len(seen) == 7
    # Download, aggregation and plots stayed local: the only cluster jobs are train jobs.
    others = [j for j in cluster.jobs() if j["JobId"] not in before and j["JobId"] not in jobs]
    assert not [j for j in others if j["WorkDir"] == str(workdir)], others
    assert len(jobs) == 7, f"expected 7 train jobs (no retries), got {sorted(jobs)}"
    for name in ("mnist.pdf", "mnist_reg_ablation.pdf", "mnist_prand_ablation.pdf", "sag.pdf"):
        pdf = workdir / "figures" / name
        assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", pdf
    for table in ("reg_ablation", "prand_ablation"):
        assert (workdir / "results" / "tables" / f"{table}.csv").stat().st_size > 0
    print(f"smoke workflow under SLURM: {wall:.1f} s")


@pytest.mark.slow
def test_scancel_then_dead_head_then_rerun_resume_from_checkpoints(cluster, slurm_workdir):
    """One train job through both ways a cluster job dies, as docs/cluster.md describes:

    1. `scancel` of the running job while Snakemake lives: the profile's retries resubmit it
       (second attempt: twice the time, more memory) and it resumes from its checkpoint;
    2. the Snakemake head is killed (SIGKILL) while that job runs: the job lives on, is found
       with `squeue --me` under the run ID and ended with `scancel --name <run id>`; the
       directory is locked, `--unlock` and a rerun resume the run from its checkpoint again.
    """
    workdir, profile, config = slurm_workdir
    run = "results/runs/sensitivity/sag/s0.7/rep0"
    checkpoint = workdir / (run + ".checkpoint.pt")
    train_log = workdir / "results" / "logs" / "train" / "sensitivity" / "sag" / "s0.7" / "rep0.log"
    args = ["--config", *config, "s_des=0.7", "max_steps=300", "checkpoint_every=5", "--", run]
    head_log = workdir.parent / "head.log"
    before = set(train_jobs(cluster))

    def new_jobs(state: str) -> list[str]:
        return [k for k, j in train_jobs(cluster).items() if k not in before and j["JobState"] == state]

    def log_text() -> str:
        # The resubmitted job's log appears only once its shell starts: RUNNING comes first.
        try:
            return train_log.read_text()
        except FileNotFoundError:
            return ""

    def wait_for(cond, what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and head.poll() is None and not cond():
            time.sleep(0.2)
        assert cond(), f"{what} did not happen:\n" + head_log.read_text()[-3000:]

    with open(head_log, "w") as fh:
        head = subprocess.Popen(snakemake_cmd(workdir, profile, *args), env=cluster.env(),
                                cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
    try:
        # 1. scancel while the head lives: resubmitted, resumed.
        wait_for(lambda: new_jobs("RUNNING") and checkpoint.is_file(), "a checkpoint of the job")
        first = new_jobs("RUNNING")[0]
        cluster.run("scancel", first)
        wait_for(lambda: [k for k in new_jobs("RUNNING") if k != first]
                 and "resuming from checkpoint" in log_text(), "the resubmitted job resuming")
        second = [k for k in new_jobs("RUNNING") if k != first][0]
        def stamp():
            try:
                return checkpoint.stat().st_mtime_ns
            except FileNotFoundError:
                return None

        resumed_from = stamp()
        wait_for(lambda: stamp() not in (resumed_from, None), "a newer checkpoint")
    finally:
        head.send_signal(signal.SIGKILL)  # 2. the head dies; its SLURM job does not
        head.wait()
    jobs = train_jobs(cluster)
    assert jobs[first]["JobState"] == "CANCELLED", jobs[first]
    assert (jobs[first]["TimeLimit"], jobs[first]["MinMemoryNode"]) == ("00:30:00", "4000M")
    assert (jobs[second]["TimeLimit"], jobs[second]["MinMemoryNode"]) == ("01:00:00", "8000M")
    assert jobs[second]["TresPerJob"] == "gres:gpu:1" and jobs[second]["Partition"] == "gpu"

    run_id = re.search(r"SLURM run ID: (\S+)", head_log.read_text()).group(1)
    assert run_id.startswith("askdagger_"), run_id  # the profile's job name prefix
    mine = cluster.run("squeue", "--me", "-h", "-o", "%i %j %T").stdout.splitlines()
    assert f"{second} {run_id} RUNNING" in mine, mine  # the orphan, under the run ID
    cluster.run("scancel", "--name", run_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and train_jobs(cluster)[second]["JobState"] != "CANCELLED":
        time.sleep(0.5)
    assert train_jobs(cluster)[second]["JobState"] == "CANCELLED"

    locked = subprocess.run(snakemake_cmd(workdir, profile, *args), env=cluster.env(),
                            cwd=workdir, capture_output=True, text=True, timeout=120)
    assert locked.returncode != 0 and "lock" in locked.stderr.lower(), locked.stderr[-2000:]
    subprocess.run(snakemake_cmd(workdir, profile, "--unlock", *args), env=cluster.env(),
                   cwd=workdir, check=True, capture_output=True, timeout=120)
    rerun = subprocess.run(snakemake_cmd(workdir, profile, *args), env=cluster.env(),
                           cwd=workdir, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    info = json.loads((workdir / run / "run.json").read_text())
    resumed = info["resumed_at_steps"]
    assert len(resumed) == 2 and 0 < resumed[0] < resumed[1], resumed
    assert f"resuming from checkpoint at step {resumed[1]}" in train_log.read_text()
    assert info["slurm"]["job_id"] not in (first, second)
    assert info["slurm"]["partition"] == "gpu" and info["n_steps"] == 300
    assert not checkpoint.exists(), "the checkpoint was not removed after the run completed"
