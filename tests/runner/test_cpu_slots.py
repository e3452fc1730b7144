"""CPU core slots (askdagger_mnist.runner.cpu_slots, docs/cluster.md "CPU cores"): however many
training jobs run at once, each holds cores of its own. Separate processes, as Snakemake
starts them, each given a two-core allocation (its CPU affinity, as SLURM or a cgroup sets
it): each takes a core and runs pinned to it, every thread; a third and a fourth wait, asleep,
until a core is freed (a killed job's too); a job of two threads takes both cores; a job
waiting for one core never holds up one waiting for another. In one process: the opt-out and
platforms without CPU affinity change nothing. And a run trained pinned is bit for bit the run
trained without slots."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from askdagger_mnist.errors import UserError
from askdagger_mnist.runner.cpu_slots import (allowed_cores, cores_to_take, cpu_slots,
                                              default_lock_dir)
from conftest import MNIST_ROOT, REPO, assert_same_run

ALLOWED = allowed_cores() or []  # the affinity; under a CPU quota of N CPUs its first N
TWO_CORES = ALLOWED[:2]  # the allocation every holder below is given
needs_two_cores = pytest.mark.skipif(
    len(TWO_CORES) < 2, reason="needs CPU affinity (Linux) and at least two allowed cores")


def test_the_lowest_free_cores_are_taken():
    assert cores_to_take([1, 3, 4], 1) == [1]
    assert cores_to_take([1, 3, 4], 2) == [1, 3]
    assert cores_to_take([1, 3, 4], 4) is None  # too few free: none taken
    assert cores_to_take([], 1) is None
    assert default_lock_dir().name == f"askdagger-mnist-cpu-slots-{os.getuid()}"


# ---- separate processes, as Snakemake starts them -------------------------------------------

HOLDER = """
import json, os, sys, threading, time
from askdagger_mnist.runner.cpu_slots import cpu_slots
os.sched_setaffinity(0, json.loads(sys.argv[2]))  # the job's allocation (SLURM, a cgroup)
# A thread started before the slot is taken, as numpy's BLAS starts its own at import.
early = threading.Event()
threading.Thread(target=early.wait, daemon=True).start()
cpu_before = time.process_time()
with cpu_slots(int(sys.argv[3]), True, sys.argv[1]) as placement:
    cpu_s = time.process_time() - cpu_before
    threads = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    print(json.dumps({**placement.record(), "cpu_s": cpu_s, "threads": threads}), flush=True)
    sys.stdin.read()  # hold the cores until the test closes stdin (or kills the process)
print(json.dumps(sorted(os.sched_getaffinity(0))), flush=True)  # after: the allocation again
"""


def _holder(folder, threads=1, allowed=TWO_CORES):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder), json.dumps(allowed), str(threads)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _placed(proc) -> dict:
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return json.loads(line)


def _still_waiting(proc) -> bool:
    return proc.poll() is None and not select.select([proc.stdout], [], [], 0)[0]


def _end(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.stdin.close()
        p.wait(timeout=30)


def _pinned_to(placed: dict) -> list[int]:
    """The cores every thread of a holder may run on (all the same, else the test fails)."""
    affinities = {tuple(a) for a in placed["threads"].values()}
    assert len(placed["threads"]) >= 2 and len(affinities) == 1, placed["threads"]
    return list(affinities.pop())


@needs_two_cores
def test_jobs_take_a_core_each_pinned_and_later_ones_wait_asleep_until_one_is_freed(tmp_path):
    first = [_holder(tmp_path) for _ in range(2)]  # started together
    procs = list(first)
    try:
        got = [_placed(p) for p in first]
        assert sorted(c for g in got for c in g["cores"]) == TWO_CORES  # one core each, distinct
        for g in got:
            assert _pinned_to(g) == g["cores"] and g["allowed"] == TWO_CORES
            assert g["lock_dir"] == str(tmp_path)
        waiters = [_holder(tmp_path) for _ in range(2)]  # more jobs than cores
        procs += waiters
        lines = [w.stderr.readline() for w in waiters]
        assert all(line.startswith("all 2 CPU cores this job may use (") and "are taken: waiting"
                   in line for line in lines), lines
        time.sleep(2.0)
        assert all(_still_waiting(w) for w in waiters)
        victim, survivor = first
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        freed = got[0]["cores"]
        ready, _, _ = select.select([w.stdout for w in waiters], [], [], 30)
        assert len(ready) == 1  # a waiter takes the freed core
        now = next(w for w in waiters if w.stdout is ready[0])
        placed = _placed(now)
        assert placed["cores"] == _pinned_to(placed) == freed  # never the survivor's core
        other = next(w for w in waiters if w is not now)
        time.sleep(0.5)
        assert _still_waiting(other)  # the other one still waits
        survivor.stdin.close()
        assert json.loads(survivor.stdout.readline()) == TWO_CORES  # its affinity given back
        last = _placed(other)
        assert last["cores"] == _pinned_to(last) == got[1]["cores"]
        for waited in (placed, last):
            assert waited["waited_s"] >= 2.0
            assert waited["cpu_s"] < 0.1, waited  # asleep, not spinning, while it waited
    finally:
        _end(procs)


@needs_two_cores
def test_a_job_of_two_threads_takes_two_cores_and_one_of_three_all_it_may_use(tmp_path):
    two = _holder(tmp_path, threads=2)
    procs = [two]
    try:
        got = _placed(two)
        assert got["cores"] == _pinned_to(got) == TWO_CORES
        one = _holder(tmp_path)
        procs.append(one)
        assert "are taken: waiting" in one.stderr.readline()
        two.stdin.close()
        assert _placed(one)["cores"] == TWO_CORES[:1]
        one.stdin.close()
        three = _holder(tmp_path, threads=3)  # more threads than allowed cores: all of them
        procs.append(three)
        assert _placed(three)["cores"] == TWO_CORES
    finally:
        _end(procs)


@needs_two_cores
def test_a_waiter_for_other_cores_never_holds_up_a_job_whose_core_is_freed(tmp_path):
    """Two allocations of one core each (two SLURM jobs on a node): a job waiting for core A
    does not keep a job waiting for core B from taking B once B is freed."""
    core_a, core_b = ([c] for c in TWO_CORES)
    on_a, on_b = _holder(tmp_path, allowed=core_a), _holder(tmp_path, allowed=core_b)
    procs = [on_a, on_b]
    try:
        assert _placed(on_a)["cores"] == core_a and _placed(on_b)["cores"] == core_b
        waits_for_a = _holder(tmp_path, allowed=core_a)  # the first to wait
        procs.append(waits_for_a)
        assert "are taken: waiting" in waits_for_a.stderr.readline()
        waits_for_b = _holder(tmp_path, allowed=core_b)  # waits after it, for another core
        procs.append(waits_for_b)
        assert "are taken: waiting" in waits_for_b.stderr.readline()
        time.sleep(0.5)
        on_b.stdin.close()  # B is freed; A is not
        ready, _, _ = select.select([waits_for_b.stdout], [], [], 10)
        assert ready, "the job waiting for core B still waits behind the one waiting for A"
        assert _placed(waits_for_b)["cores"] == core_b
        assert _still_waiting(waits_for_a)
    finally:
        _end(procs)


# ---- in one process: the opt-out, no CPU affinity, errors ------------------------------------


def test_the_opt_out_takes_no_slot_and_changes_no_affinity(tmp_path):
    before = os.sched_getaffinity(0) if ALLOWED else None
    with cpu_slots(1, False, tmp_path / "slots") as placement:
        assert placement is None
        assert (os.sched_getaffinity(0) if ALLOWED else None) == before
    assert not (tmp_path / "slots").exists()


def test_without_cpu_affinity_jobs_run_as_they_would_without_slots(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS
    with cpu_slots(1, True, tmp_path / "slots") as placement:
        assert placement is None
    assert not (tmp_path / "slots").exists()


@pytest.mark.skipif(not ALLOWED, reason="needs CPU affinity (Linux)")
def test_in_process_the_slot_pins_and_the_affinity_comes_back(tmp_path):
    before = os.sched_getaffinity(0)
    with cpu_slots(1, True, tmp_path) as placement:
        assert os.sched_getaffinity(0) == set(placement.cores) and len(placement.cores) == 1
        assert placement.cores[0] in before and (tmp_path / f"core-{placement.cores[0]}.lock").is_file()
    assert os.sched_getaffinity(0) == before


@pytest.mark.skipif(not ALLOWED, reason="needs CPU affinity (Linux)")
def test_cores_lost_during_the_run_do_not_fail_it_at_the_end(tmp_path, monkeypatch):
    """Giving the job back all its allowed cores at the end is best effort: where a cgroup took
    some away meanwhile, the kernel refuses them, and a run already made must not fail for it."""
    real = os.sched_setaffinity
    shrunk, refused = [], []

    def setaffinity(tid, cores):
        if shrunk:  # the cgroup lost cores while the job ran: the old set is refused
            refused.append(set(cores))
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        real(tid, cores)

    before = os.sched_getaffinity(0)
    monkeypatch.setattr(os, "sched_setaffinity", setaffinity)
    try:
        with cpu_slots(1, True, tmp_path) as placement:
            assert os.sched_getaffinity(0) == set(placement.cores)
            shrunk.append(True)
        assert refused and refused[0] == before  # it tried to give them back, and went on
    finally:
        real(0, before)


@pytest.mark.skipif(not ALLOWED, reason="needs CPU affinity (Linux)")
def test_a_slot_folder_that_is_a_file_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with (pytest.raises(UserError, match=r"^the CPU core slot folder .* cannot be used .*TMPDIR.*"
                                         r"--no-cpu-slots.*\.$"),
          cpu_slots(1, True, tmp_path / "file")):
        pass


@pytest.mark.skipif(not ALLOWED, reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("code", [errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_slot_folder_without_locks_is_one_sentence_and_leaks_no_descriptor(tmp_path,
                                                                              monkeypatch, code):
    """TMPDIR on a file system without flock (some NFS and Lustre mounts): one sentence
    naming the lock and the ways out, not a traceback; every descriptor opened is closed."""
    from askdagger_mnist.runner import slots

    def no_locks(fd, how):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(slots.fcntl, "flock", no_locks)
    before = set(os.listdir("/proc/self/fd"))
    with (pytest.raises(UserError, match=r"^the CPU core slot lock .*choose\.lock cannot be taken: "
                                         r"its file system does not support locks \(.*\); set "
                                         r"TMPDIR to another folder.*--no-cpu-slots.*\.$"),
          cpu_slots(1, True, tmp_path / "slots")):
        pass
    assert set(os.listdir("/proc/self/fd")) == before


# ---- a whole run: pinned or not, the same run -------------------------------------------------


def _train(out, tmp, *extra) -> subprocess.CompletedProcess:
    argv = ["--mode", "sensitivity", "--s-des", "0.9", "--rep", "1", "--max-steps", "3",
            "--data-root", str(MNIST_ROOT), "--out", str(out), "--device", "cpu",
            "--progress-every", "0", *extra]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp)}  # the slot folder: <TMPDIR>/askdagger-mnist-...
    return subprocess.run([sys.executable, "-m", "askdagger_mnist.cli.train", *argv], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_run_pinned_to_a_core_is_the_run_trained_without_slots(tmp_path):
    pinned, unpinned = tmp_path / "pinned", tmp_path / "unpinned"
    for out, extra in ((pinned, ()), (unpinned, ("--no-cpu-slots",))):
        done = _train(out, tmp_path, *extra)
        assert done.returncode == 0, done.stderr
    assert_same_run(pinned, unpinned)
    placement = json.loads((pinned / "run.json").read_text())["cpu_placement"]
    if ALLOWED:
        assert placement["cores"] in [[c] for c in ALLOWED] and placement["allowed"] == ALLOWED
        assert placement["lock_dir"] == str(tmp_path / f"askdagger-mnist-cpu-slots-{os.getuid()}")
        assert placement["waited_s"] >= 0
    else:
        assert placement is None
    assert json.loads((unpinned / "run.json").read_text())["cpu_placement"] is None
