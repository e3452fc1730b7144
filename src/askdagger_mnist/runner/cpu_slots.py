"""CPU core slots: however many training jobs run at once (``snakemake --cores 8`` on a 2-core
machine starts eight), no two share a CPU core; the jobs beyond the cores wait, asleep
(docs/cluster.md, "CPU cores").

Each core a job may use (its CPU affinity, ``os.sched_getaffinity``, as SLURM or a cgroup sets
it; under a CPU quota of N CPUs, as ``docker --cpus`` sets, only the first N: cpu_quota.py) is a
slot: ``core-<id>.lock`` in ``<temp dir>/askdagger-mnist-cpu-slots-<uid>``, held and
waited for as slots.py says (a killed job's cores free themselves). A job takes as many cores
as it has threads (all it may use when it has more threads than that), the lowest free ones,
holds them for its whole run and pins every thread it has to them. Slots are named by core id,
so jobs whose allocations do not overlap never wait for each other; a waiting job queues with
those of its allocation and need (slots.py), never behind one that waits for other cores. Where
the platform has no CPU affinity (macOS), or with ``cpu_slots: false``, jobs take no slot and
run as they are.

Pinning changes where a job's threads run, never what they compute: the number of torch
threads is set explicitly (``--threads``), and numpy's BLAS threads started before the pin
keep their number. Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, stderr_line
from . import cpu_quota, slots

WHAT = "CPU core slot"  # how errors name them, and how to name another folder:
ELSEWHERE = ("set TMPDIR to another folder, or run without CPU core slots (--no-cpu-slots, "
             "config key cpu_slots: false)")


@dataclass(frozen=True)
class CorePlacement:
    """The cores a job holds and runs on (``cores``), among those it was allowed."""

    cores: list[int]
    allowed: list[int]
    lock_dir: str
    waited_s: float

    def record(self) -> dict:
        return dataclasses.asdict(self)


def default_lock_dir() -> Path:
    """One folder per user and machine: ``<temp dir>/askdagger-mnist-cpu-slots-<uid>``."""
    return slots.default_lock_dir("cpu")


def allowed_cores() -> list[int] | None:
    """The cores this process may run on, or None where the platform cannot say or set it:
    its CPU affinity, of which only the first N under a CPU quota of N CPUs (cpu_quota.py)."""
    if not (hasattr(os, "sched_getaffinity") and hasattr(os, "sched_setaffinity")):
        return None
    cores = sorted(os.sched_getaffinity(0))
    quota = cpu_quota.quota_cpus()
    return cores[:quota] if quota is not None else cores


def cores_to_take(free: Sequence[int], need: int) -> list[int] | None:
    """The lowest ``need`` of the ``free`` cores; None when fewer are free."""
    return list(free[:need]) if len(free) >= need else None


def slot_path(lock_dir: Path, core: int) -> Path:
    return Path(lock_dir) / f"core-{core}.lock"


def _take_cores(lock_dir: Path, allowed: list[int], need: int):
    """(descriptors, cores) of ``need`` free cores, or None (holding none). The caller holds
    choose.lock."""
    free = {core: fd for core in allowed
            if (fd := slots.try_lock(slot_path(lock_dir, core), WHAT, ELSEWHERE)) is not None}
    chosen = cores_to_take(sorted(free), need) or []
    for core in set(free) - set(chosen):
        os.close(free[core])
    return ([free[core] for core in chosen], chosen) if chosen else None


def _thread_ids() -> list[int]:
    """Every thread of this process (Linux: /proc/self/task), else this thread only (0)."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def pin(cores: Sequence[int]) -> None:
    """Let every thread of this process run on ``cores`` only. (``sched_setaffinity(0)``
    alone sets the calling thread's, and numpy's BLAS threads already run by then.)"""
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            pass
        except OSError as exc:
            raise UserError(f"this job cannot be pinned to CPU cores {list(cores)} "
                            f"({exc.strerror}): {ELSEWHERE}.") from None


@contextlib.contextmanager
def cpu_slots(threads: int, enabled: bool = True, lock_dir: Path | None = None,
              poll_s: float = slots.POLL_S, log: Callable[[str], None] = stderr_line,
              ) -> Iterator[CorePlacement | None]:
    """Hold ``threads`` of this process's allowed cores for the ``with`` block, every thread
    pinned to them (waiting while too few are free); yields their ``CorePlacement``, or None
    without slots (``enabled`` False, or no CPU affinity on this platform)."""
    if threads < 1:
        raise UserError(f"--threads must be >= 1, not {threads}.")
    allowed = allowed_cores() if enabled else None
    if allowed is None:
        yield None
        return
    need = min(threads, len(allowed))
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    slots.prepare(folder, lock_dir is None, WHAT, ELSEWHERE)
    (fds, cores), waited_s = slots.wait_for_slots(
        folder, lambda: _take_cores(folder, allowed, need), waited_for(allowed, need),
        waiting_line(allowed, need, folder), WHAT, ELSEWHERE, poll_s, log)
    before = sorted(os.sched_getaffinity(0))  # all of it, beyond a quota's share
    try:
        pin(cores)
        try:
            yield CorePlacement(cores, allowed, str(folder), waited_s)
        finally:
            with contextlib.suppress(UserError):  # best effort: the run is made (or failed)
                pin(before)  # already; cores the job lost meanwhile (a cgroup shrunk) refuse
    finally:
        for fd in fds:
            os.close(fd)


def waited_for(allowed: list[int], need: int) -> str:
    """The name of a job's queue (slots.queue_path): the cores it may use and how many it
    needs, e.g. ``cores-0-3,8-take-1``."""
    return f"cores-{_ranges(allowed)}-take-{need}"


def waiting_line(allowed: list[int], need: int, folder: Path) -> str:
    """What a job that must wait says, once, in its log."""
    cores = f"{len(allowed)} CPU cores this job may use ({_ranges(allowed)})"
    if need == 1:
        return f"all {cores} are taken: waiting for one to be freed ({folder})"
    return f"fewer than {need} of the {cores} are free: waiting for them to be freed ({folder})"


def _ranges(cores: list[int]) -> str:
    """Sorted core ids as ``taskset`` writes them: ``0-3,8``."""
    spans: list[list[int]] = []
    for core in cores:
        if spans and core == spans[-1][1] + 1:
            spans[-1][1] = core
        else:
            spans.append([core, core])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)
