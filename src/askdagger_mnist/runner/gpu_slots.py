"""GPU slots: which GPU of a workstation a training job runs on, when several jobs share the
machine's GPUs (docs/cluster.md, "GPU workstation").

Each visible GPU has ``jobs_per_gpu`` slots: lock files in
``<temp dir>/askdagger-mnist-gpu-slots-<uid>``, held and waited for as slots.py says (a killed
job's slot frees itself; a waiting job costs next to no CPU).

A job takes a free slot of the least-loaded GPU (the fewest slots held; ties: the lowest
index). The choice is made under slots.py's ``choose.lock``, so that jobs starting at the same
moment see each other's slots and spread over the GPUs.

GPUs are named by their ``CUDA_VISIBLE_DEVICES`` entry (an index or a UUID; the position among
the visible GPUs when it is unset), so workflows with different visible GPUs share the slots of
the GPUs they both see, as long as they name them the same way; a waiting job queues with those
that see the same GPUs (slots.py), never behind one that waits for other GPUs. Under SLURM, with
GPUs allocated to the job, SLURM has placed it already: its first visible GPU is used as is,
without a lock.

Standard library only: tests simulate the GPU count (``n_gpus``); the train CLI passes
``torch.cuda.device_count()`` (``devices.placed_device``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, stderr_line
from . import slots

POLL_S = slots.POLL_S
WHAT = "GPU slot"  # how errors name them, and how to name another folder:
ELSEWHERE = "name another folder with --gpu-slot-dir (under Snakemake: set TMPDIR)"
# Set (one of them) by SLURM when the job was allocated GPUs (--gpus, --gres=gpu).
SLURM_GPU_VARIABLES = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE")


@dataclass(frozen=True)
class Placement:
    """Where a job runs: ``cuda:<index>``, the GPU with ``CUDA_VISIBLE_DEVICES`` entry
    ``visible_device``, in slot ``slot`` (None under SLURM: not locked)."""

    index: int
    visible_device: str
    slot: int | None
    jobs_per_gpu: int
    lock: str | None
    waited_s: float = 0.0

    def record(self) -> dict:
        return dataclasses.asdict(self)


def default_lock_dir() -> Path:
    """One folder per user and machine: ``<temp dir>/askdagger-mnist-gpu-slots-<uid>``."""
    return slots.default_lock_dir("gpu")


def visible_devices(n_gpus: int, env: Mapping[str, str] = os.environ) -> list[str]:
    """The names of the ``n_gpus`` visible GPUs: their ``CUDA_VISIBLE_DEVICES`` entries, or
    their positions when it is unset (or lists fewer)."""
    entries = [e.strip() for e in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    if len(entries) < n_gpus:
        return [str(i) for i in range(n_gpus)]
    return entries[:n_gpus]  # CUDA ignores the entries after the first invalid one


def slurm_allocated(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this is a SLURM job that SLURM gave GPUs (which it placed itself)."""
    return bool(env.get("SLURM_JOB_ID")) and any(env.get(v) for v in SLURM_GPU_VARIABLES)


def least_loaded(held: Sequence[int], jobs_per_gpu: int) -> int | None:
    """The GPU to take a slot on, given the slots ``held`` on each: among those with a free
    slot, the one with the fewest held (the lowest index on ties); None when all are full."""
    free = [g for g, n in enumerate(held) if n < jobs_per_gpu]
    return min(free, key=lambda g: (held[g], g)) if free else None


def slot_path(lock_dir: Path, device: str, slot: int) -> Path:
    return Path(lock_dir) / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.slot{slot}.lock"


def _take_slot(lock_dir: Path, devices: list[str], jobs_per_gpu: int):
    """(descriptor, GPU index, slot) of a free slot on the least-loaded GPU, or None. The
    caller holds choose.lock."""
    # Per GPU, its free slots as (slot, descriptor), each locked by us for the moment.
    free = [[(k, fd) for k in range(jobs_per_gpu)
             if (fd := slots.try_lock(slot_path(lock_dir, device, k), WHAT, ELSEWHERE)) is not None]
            for device in devices]
    best = least_loaded([jobs_per_gpu - len(held) for held in free], jobs_per_gpu)
    kept = None if best is None else free[best][0]
    for held in free:  # release every slot but the one kept
        for entry in held:
            if entry is not kept:
                os.close(entry[1])
    return None if kept is None else (kept[1], best, kept[0])


@contextlib.contextmanager
def gpu_slot(n_gpus: int, jobs_per_gpu: int, lock_dir: Path | None = None,
             env: Mapping[str, str] = os.environ, poll_s: float = POLL_S,
             log: Callable[[str], None] = stderr_line) -> Iterator[Placement]:
    """Hold a slot on one of ``n_gpus`` visible GPUs for the ``with`` block (waiting while
    all ``n_gpus x jobs_per_gpu`` are taken); yields its ``Placement``."""
    if jobs_per_gpu < 1:
        raise UserError(f"--jobs-per-gpu must be >= 1, not {jobs_per_gpu}.")
    if n_gpus < 1:
        raise ValueError(f"no GPU to place a job on (n_gpus = {n_gpus})")
    devices = visible_devices(n_gpus, env)
    if slurm_allocated(env):
        yield Placement(0, devices[0], None, jobs_per_gpu, None)
        return
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    slots.prepare(folder, lock_dir is None, WHAT, ELSEWHERE)
    (fd, index, slot), waited_s = slots.wait_for_slots(
        folder, lambda: _take_slot(folder, devices, jobs_per_gpu),
        f"gpus-{','.join(devices)}-jobs-{jobs_per_gpu}",
        f"all {n_gpus * jobs_per_gpu} GPU slots ({n_gpus} GPUs x {jobs_per_gpu} jobs per GPU) "
        f"are taken: waiting for one to be freed ({folder})", WHAT, ELSEWHERE, poll_s, log)
    try:
        yield Placement(index, devices[index], slot, jobs_per_gpu,
                        str(slot_path(folder, devices[index], slot)), waited_s)
    finally:
        os.close(fd)
