"""The cluster path on a real SLURM: a single-node cluster started by the tests.

1. The harness itself: a plain ``sbatch --gpus=1 -p gpu`` job runs on the node with the
   fake GPU, and two GPU jobs never overlap (one GPU GRES).
2. The smoke workflow (one s_des) with the cluster profile (``workflow/profiles/slurm-gpu``)
   made into a site profile for the local partitions, as docs/cluster.md says: every train
   job runs under SLURM in the gpu partition with one GPU, batched GROUP_SIZE runs to a
   submission (no --ntasks-per-gpu), download/aggregation/plots stay local, the figures and
   tables are produced.
3. One train job through ``scancel`` (the rerun resumes it from its checkpoint) and a killed
   Snakemake head (orphan found and cancelled by run ID, unlock, rerun resumed from the newer
   checkpoint).
4. ``scancel`` of a submission of two runs: the rerun keeps the finished one and resumes the
   other.
5. ``runs_per_job``: a batch's jobs in one submission, its first job training all its runs.

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

pytestmark = pytest.mark.needs_mnist

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

PROFILE = REPO / "workflow" / "profiles" / "slurm-gpu" / "config.yaml"
SMOKE = REPO / "workflow" / "presets" / "smoke.yaml"
LOCAL_PARTITIONS = {"<cpu-partition>": "cpu", "<gpu-partition>": "gpu"}
# Only what a site without an accounting database must add, and faster polling for the test.
SITE_SETTINGS = {
    "slurm-status-command": "squeue",  # without slurmdbd, sacct never sees jobs finish
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,
}


# The repository's 20 runs per submission would put the smoke preset's 7 train jobs into one;
# 3 makes several submissions (3 + 3 + 1), as a sweep has.
GROUP_SIZE = 3


def site_profile(directory: Path) -> Path:
    """Our own profile derived from the repository's, as docs/cluster.md tells users to make
    one: the placeholders replaced by this cluster's partitions, plus the site settings."""
    import yaml

    text = PROFILE.read_text()
    assert "  - train_batch=20\n" in text, "the profile's group size changed: update GROUP_SIZE's note"
    text = text.replace("  - train_batch=20\n", f"  - train_batch={GROUP_SIZE}\n")
    for placeholder, value in LOCAL_PARTITIONS.items():
        assert placeholder in text, f"{PROFILE} lost its placeholder {placeholder}"
        text = text.replace(placeholder, value)
    profile = yaml.safe_load(text)
    leftover = [line for line in yaml.safe_dump(profile).splitlines() if "<" in line]
    assert not leftover, f"placeholders left in the profile: {leftover}"
    profile.update(SITE_SETTINGS)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
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
    # The command line's --config replaces the profile's (device=cuda): the test cluster's GPUs
    # are fake, so the runs train on the CPU of the GPU partition's node.
    return workdir, profile, [f"mnist_mirrors={mnist_mirror}", "device=cpu"]


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

    # Every run of the preset was trained by a SLURM job in the gpu partition with one GPU,
    # GROUP_SIZE runs per submission, one after another.
    runs = sorted((workdir / "results" / "runs").glob("*/*/s*/rep*/run.json"))
    assert len(runs) == 7, [str(r) for r in runs]
    jobs = {k: v for k, v in train_jobs(cluster).items() if k not in before}
    per_job: dict[str, int] = {}
    for path in runs:
        record = json.loads(path.read_text())["slurm"]
        assert record is not None, f"{path} was not trained under SLURM"
        assert record["partition"] == "gpu", record
        assert record["node"] == "node1", record
        assert record["job_id"] in jobs, (record, sorted(jobs))
        if cluster.gpus_indexed:
            assert record["cuda_visible_devices"] == "0", record
        per_job[record["job_id"]] = per_job.get(record["job_id"], 0) + 1
    assert sorted(per_job.values()) == [1, GROUP_SIZE, GROUP_SIZE], per_job
    assert len(jobs) == -(-7 // GROUP_SIZE), f"expected 3 submissions (no retries), got {sorted(jobs)}"
    for job_id, job in jobs.items():
        # one GPU, one core and one run's memory; the runtimes of its runs added up
        assert job["Partition"] == "gpu" and job["TresPerJob"] == "gres:gpu:1", job
        assert job["NumCPUs"] == "1" and job["MinMemoryNode"] == "4000M", job
        assert job["TimeLimit"] == f"00:{5 * per_job[job_id]:02d}:00", job
        assert job.get("NtasksPerTRES") in (None, "0"), job  # no --ntasks-per-gpu
        assert job["JobState"] == "COMPLETED", job
    # Download, aggregation and plots stayed local: the only cluster jobs are train jobs.
    others = [j for j in cluster.jobs() if j["JobId"] not in before and j["JobId"] not in jobs]
    assert not [j for j in others if j["WorkDir"] == str(workdir)], others
    for name in ("mnist.pdf", "mnist_reg_ablation.pdf", "mnist_prand_ablation.pdf", "sag.pdf"):
        pdf = workdir / "figures" / name
        assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", pdf
    for table in ("reg_ablation", "prand_ablation"):
        assert (workdir / "results" / "tables" / f"{table}.csv").stat().st_size > 0
    print(f"smoke workflow under SLURM: {wall:.1f} s")


@pytest.mark.slow
def test_scancel_then_dead_head_then_rerun_resume_from_checkpoints(cluster, slurm_workdir):
    """One train job through both ways a cluster job dies, as docs/cluster.md describes:

    1. `scancel` of the running job while Snakemake lives: Snakemake reports the failure and
       stops (the profile has no retries); the rerun resumes the run from its checkpoint;
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

    def start_head():
        with open(head_log, "w") as fh:
            return subprocess.Popen(snakemake_cmd(workdir, profile, *args), env=cluster.env(),
                                    cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)

    head = start_head()
    try:
        # 1. scancel while the head lives: the head reports it and stops (no retries: the
        # profile leaves them to a rerun); the rerun resumes the run from its checkpoint.
        wait_for(lambda: new_jobs("RUNNING") and checkpoint.is_file(), "a checkpoint of the job")
        first = new_jobs("RUNNING")[0]
        cluster.run("scancel", first)
        assert head.wait(timeout=120) != 0, head_log.read_text()[-3000:]
        assert checkpoint.is_file() and not (workdir / run).exists()
        head = start_head()
        wait_for(lambda: [k for k in new_jobs("RUNNING") if k != first]
                 and "resuming from checkpoint" in log_text(), "the rerun's job resuming")
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
    for job in (jobs[first], jobs[second]):
        assert (job["TimeLimit"], job["MinMemoryNode"]) == ("00:05:00", "4000M"), job
        assert job["TresPerJob"] == "gres:gpu:1" and job["Partition"] == "gpu", job

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


@pytest.mark.slow
def test_scancel_of_a_grouped_submission_keeps_its_finished_run_and_resumes_the_other(
    cluster, slurm_workdir
):
    """Two runs in one submission (one after another): `scancel` of it while the second runs.
    The head reports the failure; rerunning the same command keeps the finished run as it is
    (not deleted, not retrained) and resumes the cut one from its checkpoint, in a submission
    of its own."""
    workdir, profile, config = slurm_workdir
    runs = ["results/runs/sensitivity/sag/s0.7/rep0", "results/runs/specificity/sag/s0.7/rep0"]
    args = ["--config", *config, "s_des=0.7", "max_steps=150", "checkpoint_every=5", "--", *runs]
    before = set(train_jobs(cluster))
    head_log = workdir.parent / "head.log"
    with open(head_log, "w") as fh:
        head = subprocess.Popen(snakemake_cmd(workdir, profile, *args), env=cluster.env(),
                                cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        done = killed = None
        while time.monotonic() < deadline and head.poll() is None:
            finished = [r for r in runs if (workdir / r / "run.json").is_file()]
            if len(finished) == 1:
                other = next(r for r in runs if r not in finished)
                if Path(workdir, other + ".checkpoint.pt").is_file():
                    done, killed = finished[0], other
                    break
            time.sleep(0.2)
        assert done, "no moment with one run finished and the other checkpointed:\n" + head_log.read_text()[-3000:]
        submitted = [k for k in train_jobs(cluster) if k not in before]
        assert len(submitted) == 1, submitted  # both runs in one submission
        kept = (workdir / done / "run.json").read_bytes()
        cluster.run("scancel", submitted[0])
        assert head.wait(timeout=300) != 0, head_log.read_text()[-4000:]
    finally:
        if head.poll() is None:
            head.kill()
    assert (workdir / done / "run.json").read_bytes() == kept, "the finished run was deleted"
    assert not (workdir / killed).exists()
    rerun = subprocess.run(snakemake_cmd(workdir, profile, *args), env=cluster.env(),
                           cwd=workdir, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    jobs = {k: v for k, v in train_jobs(cluster).items() if k not in before}
    assert jobs[submitted[0]]["JobState"] == "CANCELLED"
    assert len(jobs) == 2, jobs  # the cut run alone in the rerun's submission
    assert (workdir / done / "run.json").read_bytes() == kept, "the finished run was retrained"
    info = json.loads((workdir / killed / "run.json").read_text())
    assert info["resumed_at_steps"] and info["n_steps"] == 150, info["resumed_at_steps"]
    assert info["slurm"]["job_id"] not in (submitted[0],) and info["slurm"]["job_id"] in jobs


@pytest.mark.slow
def test_a_batch_of_runs_per_job_is_one_submission_whose_first_job_trains_them_all(
    cluster, slurm_workdir
):
    """runs_per_job 3 (docs/workflow.md, "Runs per job"): the three runs of a configuration are
    trained by the first one's job, one process under SLURM in the gpu partition; the other two
    jobs, connected to it, go into the same submission and restore their runs; its time limit
    is the profile's per-job runtime for each of the three jobs."""
    workdir, profile, config = slurm_workdir
    runs = [f"results/runs/sensitivity/sag/s0.9/rep{rep}" for rep in range(3)]
    args = ["--config", *config, "s_des=0.9", "repetitions=3", "runs_per_job=3", "--", *runs]
    before = set(train_jobs(cluster))
    proc = subprocess.run(snakemake_cmd(workdir, profile, *args), env=cluster.env(), cwd=workdir,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:] + "\n" + cluster.log_tail()
    jobs = {k: v for k, v in train_jobs(cluster).items() if k not in before}
    assert len(jobs) == 1, jobs  # one batch: one submission (group size 3)
    (job_id, job), = jobs.items()
    assert job["Partition"] == "gpu" and job["TresPerJob"] == "gres:gpu:1", job
    assert job["TimeLimit"] == "00:15:00" and job["JobState"] == "COMPLETED", job
    infos = [json.loads((workdir / run / "run.json").read_text()) for run in runs]
    assert {info["slurm"]["job_id"] for info in infos} == {job_id}
    logs = workdir / "results" / "logs" / "train" / "sensitivity" / "sag" / "s0.9"
    assert "run 3 of 3: " in (logs / "rep0.log").read_text()
    for rep in (1, 2):
        assert "restored from its kept copy" in (logs / f"rep{rep}.log").read_text()
