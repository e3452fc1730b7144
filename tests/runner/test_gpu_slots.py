"""GPU slots on a workstation (askdagger_mnist.runner.gpu_slots, docs/cluster.md), with a simulated
GPU count: jobs started together spread over the GPUs, one more waits until a slot is freed,
a killed job's slot frees itself, CUDA_VISIBLE_DEVICES names the GPUs, a job waiting for other
GPUs holds up no one, SLURM's GPU is used as it is, and a bad jobs_per_gpu is one sentence."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch

from askdagger_mnist.experiment import config as cfg
from askdagger_mnist.runner import devices
from askdagger_mnist.fast.engine import FAST
from askdagger_mnist.algorithm.engine import PLAIN
from askdagger_mnist.runner.engine_choice import engine_for
from askdagger_mnist.errors import UserError
from askdagger_mnist.runner.gpu_slots import (
    default_lock_dir,
    gpu_slot,
    least_loaded,
    slot_path,
    slurm_allocated,
    visible_devices,
)
from askdagger_mnist.runner.slots import queue_path
from conftest import REPO

NO_CUDA_ENV: dict = {}  # no CUDA_VISIBLE_DEVICES, no SLURM


class Waiting(Exception):
    """Raised by a log callback: the job would wait for a slot."""


def _refuse_to_wait(line: str) -> None:
    raise Waiting(line)


# ---- the choice ----------------------------------------------------------------------------


@pytest.mark.parametrize("held, jobs_per_gpu, expected", [
    ([0, 0], 1, 0), ([1, 0], 1, 1), ([1, 1], 1, None), ([2, 1], 2, 1), ([1, 1, 0], 2, 2),
    ([2, 2, 2], 2, None), ([1, 1], 3, 0), ([0], 4, 0),
])
def test_the_least_loaded_gpu_with_a_free_slot_is_chosen(held, jobs_per_gpu, expected):
    assert least_loaded(held, jobs_per_gpu) == expected


def test_gpus_are_named_by_their_cuda_visible_devices_entry():
    assert visible_devices(2, {}) == ["0", "1"]
    assert visible_devices(2, {"CUDA_VISIBLE_DEVICES": "3, 1"}) == ["3", "1"]
    assert visible_devices(1, {"CUDA_VISIBLE_DEVICES": "GPU-8f1c,GPU-aa"}) == ["GPU-8f1c"]
    assert visible_devices(2, {"CUDA_VISIBLE_DEVICES": "7"}) == ["0", "1"]  # too few: positions
    assert slot_path("/x", "MIG-1/2", 0).name == "gpu-MIG-1_2.slot0.lock"
    assert default_lock_dir().name == f"askdagger-mnist-gpu-slots-{os.getuid()}"


def test_each_set_of_gpus_waited_for_has_a_queue_lock_of_its_own(tmp_path):
    assert queue_path(tmp_path, "gpus-2,5-jobs-1").name == "queue-gpus-2,5-jobs-1.lock"
    assert queue_path(tmp_path, "gpus-MIG-1/2-jobs-1").name == "queue-gpus-MIG-1_2-jobs-1.lock"
    uuids = [f"GPU-{i:08x}-1111-2222-3333-444455556666" for i in range(8)]
    eight, seven = (queue_path(tmp_path, f"gpus-{','.join(u)}-jobs-1") for u in (uuids, uuids[:7]))
    assert eight != seven and len(eight.name) < 255  # too long for a file name: hashed
    eight.touch()


def test_slots_fill_the_least_loaded_gpu_first_and_then_wait(tmp_path):
    with (gpu_slot(2, 2, tmp_path, NO_CUDA_ENV) as a, gpu_slot(2, 2, tmp_path, NO_CUDA_ENV) as b,
          gpu_slot(2, 2, tmp_path, NO_CUDA_ENV) as c, gpu_slot(2, 2, tmp_path, NO_CUDA_ENV) as d):
        assert [(p.index, p.slot) for p in (a, b, c, d)] == [(0, 0), (1, 0), (0, 1), (1, 1)]
        assert a.lock == str(tmp_path / "gpu-0.slot0.lock") and a.visible_device == "0"
        full = r"all 4 GPU slots \(2 GPUs x 2 jobs per GPU\) are taken"
        with (pytest.raises(Waiting, match=full),
              gpu_slot(2, 2, tmp_path, NO_CUDA_ENV, log=_refuse_to_wait)):
            pass
    with gpu_slot(2, 2, tmp_path, NO_CUDA_ENV) as again:  # all released
        assert (again.index, again.slot) == (0, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # lock files stay; never deleted
        "choose.lock", "gpu-0.slot0.lock", "gpu-0.slot1.lock", "gpu-1.slot0.lock",
        "gpu-1.slot1.lock"]


def test_cuda_visible_devices_is_honoured_across_workflows(tmp_path):
    """Workflow A sees physical GPU 5 only; workflow B sees GPUs 2 and 5: they share GPU 5."""
    a_env, b_env = {"CUDA_VISIBLE_DEVICES": "5"}, {"CUDA_VISIBLE_DEVICES": "2,5"}
    with gpu_slot(1, 1, tmp_path, a_env) as a:
        assert (a.index, a.visible_device, a.lock) == (0, "5", str(tmp_path / "gpu-5.slot0.lock"))
        with gpu_slot(2, 1, tmp_path, b_env) as b:
            assert (b.index, b.visible_device) == (0, "2")
            # Both GPUs of B are taken, one of them by A.
            with pytest.raises(Waiting), gpu_slot(2, 1, tmp_path, b_env, log=_refuse_to_wait):
                pass
    with gpu_slot(2, 1, tmp_path, b_env) as b, gpu_slot(2, 1, tmp_path, b_env) as b2:
        assert [(b.index, b.visible_device), (b2.index, b2.visible_device)] == [(0, "2"), (1, "5")]


def test_under_slurm_the_allocated_gpu_is_used_without_a_lock(tmp_path):
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "3"}
    assert slurm_allocated(env)
    folder = tmp_path / "slots"
    with gpu_slot(1, 2, folder, env) as p, gpu_slot(1, 2, folder, env) as q:
        assert p.record() == q.record() == {"index": 0, "visible_device": "3", "slot": None,
                                            "jobs_per_gpu": 2, "lock": None, "waited_s": 0.0}
    assert not folder.exists()
    # A SLURM job without GPUs (say, Snakemake run inside a CPU allocation) takes slots.
    assert not slurm_allocated({"SLURM_JOB_ID": "42"})
    with gpu_slot(1, 1, folder, {"SLURM_JOB_ID": "42"}) as p:
        assert p.slot == 0


@pytest.mark.parametrize("bad", [0, -3])
def test_a_bad_jobs_per_gpu_is_one_sentence(tmp_path, bad):
    with (pytest.raises(UserError, match=rf"^--jobs-per-gpu must be >= 1, not {bad}\.$"),
          gpu_slot(2, bad, tmp_path, NO_CUDA_ENV)):
        pass
    with pytest.raises(cfg.ConfigProblem) as info:
        cfg.check({"jobs_per_gpu": bad}, REPO / "workflow" / "schemas" / "config.schema.yaml")
    sentence = str(info.value)
    assert "jobs_per_gpu" in sentence and "an integer from 1 to 256" in sentence and "\n" not in sentence


def test_a_slot_folder_that_is_a_file_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with (pytest.raises(UserError, match="cannot be used .* --gpu-slot-dir"),
          gpu_slot(1, 1, tmp_path / "file", NO_CUDA_ENV)):
        pass


# ---- separate processes, as Snakemake starts them -------------------------------------------

HOLDER = """
import json, sys
from askdagger_mnist.runner.gpu_slots import gpu_slot
n_gpus, jobs_per_gpu, env = int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
with gpu_slot(n_gpus, jobs_per_gpu, sys.argv[1], env, poll_s=0.05) as p:
    print(json.dumps(p.record()), flush=True)
    sys.stdin.read()  # hold the slot until the test closes stdin (or kills the process)
"""


def _holder(folder, n_gpus=2, jobs_per_gpu=2, env=NO_CUDA_ENV):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), str(n_gpus), str(jobs_per_gpu),
         json.dumps(env)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def test_four_processes_spread_over_two_gpus_a_fifth_waits_and_a_killed_ones_slot_frees(tmp_path):
    first = [_holder(tmp_path) for _ in range(4)]  # started together
    try:
        got = [json.loads(p.stdout.readline()) for p in first]
        assert len({(g["index"], g["slot"]) for g in got}) == 4  # distinct slots
        assert sorted(g["index"] for g in got) == [0, 0, 1, 1]  # two on each GPU
        fifth = _holder(tmp_path)
        first.append(fifth)
        waiting = fifth.stderr.readline()
        time.sleep(1.0)
        assert fifth.poll() is None and not select.select([fifth.stdout], [], [], 0)[0]
        assert waiting.startswith("all 4 GPU slots (2 GPUs x 2 jobs per GPU) are taken: waiting")
        victim = first[2]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        freed = json.loads(fifth.stdout.readline())  # within a poll of the kill
        assert (freed["index"], freed["slot"]) == (got[2]["index"], got[2]["slot"])
        assert freed["waited_s"] >= 1.0
    finally:
        for p in first:
            if p.poll() is None:
                p.stdin.close()
            p.wait(timeout=30)


def test_a_waiter_for_other_gpus_never_holds_up_a_job_whose_gpu_is_freed(tmp_path):
    """Two workflows that see different GPUs (CUDA_VISIBLE_DEVICES 0 and 1): a job waiting for
    GPU 0 does not keep a job waiting for GPU 1 from taking it once it is freed."""
    sees_0, sees_1 = {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}
    on_0, on_1 = _holder(tmp_path, 1, 1, sees_0), _holder(tmp_path, 1, 1, sees_1)
    procs = [on_0, on_1]
    try:
        assert [json.loads(p.stdout.readline())["visible_device"] for p in procs] == ["0", "1"]
        waits_for_0 = _holder(tmp_path, 1, 1, sees_0)  # the first to wait
        procs.append(waits_for_0)
        assert "are taken: waiting" in waits_for_0.stderr.readline()
        waits_for_1 = _holder(tmp_path, 1, 1, sees_1)  # waits after it, for another GPU
        procs.append(waits_for_1)
        assert "are taken: waiting" in waits_for_1.stderr.readline()
        time.sleep(0.3)
        on_1.stdin.close()  # GPU 1 is freed; GPU 0 is not
        ready, _, _ = select.select([waits_for_1.stdout], [], [], 10)
        assert ready, "the job waiting for GPU 1 still waits behind the one waiting for GPU 0"
        assert json.loads(waits_for_1.stdout.readline())["visible_device"] == "1"
        assert waits_for_0.poll() is None and not select.select([waits_for_0.stdout], [], [], 0)[0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.close()
            p.wait(timeout=30)


# ---- the device a run gets, with two simulated GPUs ------------------------------------------


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch.cuda as a machine with two GPUs shows it (nothing reaches a real GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Simulated GPU")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_a_cuda_run_gets_the_least_loaded_gpu_and_the_fast_engine(tmp_path, two_fake_gpus):
    with devices.placed_device("auto", 1, tmp_path) as (first, placement):
        assert first == torch.device("cuda", 0)
        with devices.placed_device("cuda", 1, tmp_path) as (second, placement):
            assert second == torch.device("cuda", 1)
            assert placement == {"index": 1, "visible_device": "1", "slot": 0, "jobs_per_gpu": 1,
                                 "lock": str(tmp_path / "gpu-1.slot0.lock"),
                                 "waited_s": placement["waited_s"], "name": "Simulated GPU"}
            assert devices.device_description(second) == "cuda:1 (Simulated GPU)"
            assert engine_for("auto", second) is FAST and engine_for("plain", second) is PLAIN
    with devices.placed_device("cpu", 1, tmp_path) as (cpu, placement):
        assert cpu == torch.device("cpu") and placement is None
        assert engine_for("auto", cpu) is FAST and engine_for("plain", cpu) is PLAIN
