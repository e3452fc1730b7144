"""runner/cpu_quota.py: the CPUs a cgroup CPU quota allows (docker --cpus, Kubernetes limits),
read from cgroup file trees laid out as the kernel lays them out, v1 and v2; and the CPU core
slots taking only that many cores (a quota leaves the affinity listing every host core)."""

from __future__ import annotations

import os

import pytest

from askdagger_mnist.runner import cpu_quota, cpu_slots


def tree(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def proc(tmp_path, text: str):
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("cpu_max", "cpus"), [
    ("200000 100000\n", 2),  # docker --cpus 2
    ("50000 100000\n", 1),   # half a CPU: still one
    ("150000 100000\n", 2),  # 1.5: the whole quota used
    ("max 100000\n", None),  # no limit
])
def test_cgroup_v2_quota(tmp_path, cpu_max, cpus):
    root = tree(tmp_path / "cg", {"cpu.max": cpu_max})
    assert cpu_quota.quota_cpus(root, proc(tmp_path, "0::/\n")) == cpus


def test_cgroup_v2_the_tightest_level_above_the_process_binds(tmp_path):
    root = tree(tmp_path / "cg", {"cpu.max": "max 100000\n",
                                  "kubepods/cpu.max": "300000 100000\n",
                                  "kubepods/pod1/cpu.max": "max 100000\n",
                                  "kubepods/pod1/job/cpu.max": "max 100000\n"})
    assert cpu_quota.quota_cpus(root, proc(tmp_path, "0::/kubepods/pod1/job\n")) == 3


@pytest.mark.parametrize(("quota", "cpus"), [("400000", 4), ("-1", None)])
def test_cgroup_v1_quota_under_the_cpu_controller(tmp_path, quota, cpus):
    root = tree(tmp_path / "cg", {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": quota + "\n",
                                  "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
                                  "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                                  "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    lines = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    assert cpu_quota.quota_cpus(root, proc(tmp_path, lines)) == cpus


def test_no_cgroups_or_unreadable_files_mean_no_quota(tmp_path):
    assert cpu_quota.quota_cpus(tmp_path / "none", tmp_path / "no-such-file") is None
    root = tree(tmp_path / "cg", {"cpu.max": "garbage\n"})
    assert cpu_quota.quota_cpus(root, proc(tmp_path, "0::/\nnot a cgroup line\n")) is None


def test_this_machine_s_quota_is_read_without_error():
    found = cpu_quota.quota_cpus()
    assert found is None or found >= 1


ALLOWED = hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity")


@pytest.mark.skipif(not ALLOWED or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity (Linux) and two cores")
def test_under_a_quota_of_one_cpu_the_slots_take_one_core_and_give_back_all(tmp_path, monkeypatch):
    before = os.sched_getaffinity(0)
    monkeypatch.setattr(cpu_quota, "quota_cpus", lambda: 1)
    assert cpu_slots.allowed_cores() == sorted(before)[:1]
    with cpu_slots.cpu_slots(2, True, tmp_path) as placement:  # two threads: the one CPU
        assert placement.cores == placement.allowed == sorted(before)[:1]
        assert os.sched_getaffinity(0) == {sorted(before)[0]}
    assert os.sched_getaffinity(0) == before
