"""Train one run and publish it: the part of ``python -m askdagger_mnist.cli.train`` that needs
torch, imported only once the command knows the run must be trained (a run restored from its
kept copy never pays torch's ~1.5 s import)."""

from __future__ import annotations

import argparse
import functools
import os
import platform
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..algorithm.loop import run_loop
from ..algorithm.metrics import whole_run_metrics
from ..algorithm.schedule import lr_schedule_record
from .bookkeeping import Bookkeeping
from ..data.kept_runs import publish_run
from ..data.mnist import load_mnist_train
from ..data.rundir import MODEL_FILE, installed_versions, write_run_files
from .cpu_slots import CorePlacement
from .devices import check_device, device_description, placed_device, set_float32_precision
from .engine_choice import engine_for
from ..settings import RESULTS_VERSION, RunSettings


def cluster_record() -> dict | None:
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    return {
        "job_id": env.get("SLURM_JOB_ID"),
        "node": env.get("SLURMD_NODENAME"),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "gpus": env.get("SLURM_JOB_GPUS") or env.get("SLURM_GPUS_ON_NODE"),
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
    }


def versions() -> dict:
    return {
        "askdagger_mnist": __version__, "python": platform.python_version(),
        "numpy": np.__version__, "torch": torch.__version__,
        "torchvision": installed_versions(("torchvision",)).get("torchvision"),
    }


def tune_malloc() -> None:
    """Keep glibc from returning (and re-faulting) the loop's few-MB temporaries to the OS
    every step: measured here, this cut system time of a full run from ~8 s to under 1 s."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD: 32 MiB
            libc.mallopt(-1, 1 << 28)  # M_TRIM_THRESHOLD: 256 MiB
        except (OSError, AttributeError):
            pass


@functools.lru_cache(maxsize=1)
def mnist_train(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's training set, read once per process: the runs of one train command share it
    (nothing writes into these tensors)."""
    return load_mnist_train(root)


def train_and_publish(args: argparse.Namespace, settings: RunSettings, checkpoint: Path,
                      cores: CorePlacement | None = None) -> Path:
    """Train the run of ``settings`` (resuming from ``checkpoint`` when it exists) with the
    execution choices of the train command's ``args``, and publish it at ``args.out``. The
    caller holds the run's lock, and the CPU cores ``cores`` (cpu_slots.py; None: none)."""
    torch.set_num_threads(args.threads)
    set_float32_precision(args.matmul_precision)
    tune_malloc()
    check_device(args.device)
    # (No torch.use_deterministic_algorithms: it imports torch._inductor, ~2 s per job, and
    # the CPU kernels used here are deterministic anyway; tests/algorithm/test_loop.py checks
    # that a resumed run is bit-identical.)
    images, labels = mnist_train(args.data_root)
    # A GPU slot (gpu_slots.py) for the rest of the run; waits while all are taken.
    with placed_device(args.device, args.jobs_per_gpu, args.gpu_slot_dir) as (device, placement):
        engine = engine_for(args.engine, device)  # auto: the fast engine
        bookkeeping = Bookkeeping(checkpoint, args.checkpoint_every, args.progress_every,
                                  args.halt_after)
        state, model = run_loop(settings, images, labels, device, engine, bookkeeping)
    metrics = whole_run_metrics(state.arrays["c"], state.arrays["q"])
    train_set = state.train_set(state.step * settings.batch_size)
    metrics["train_set_size"] = len(train_set)
    seed_seq = settings.seed_sequence()
    info = {
        "settings": {**settings.to_dict(), "variant": args.variant},
        "results_version": RESULTS_VERSION,
        "seed": {"entropy": str(seed_seq.entropy), "variant_key": settings.variant_key()},
        "versions": versions(),
        "device": device_description(device),
        "gpu_placement": placement,  # the GPU slot held (index, name, slot, visible device)
        "cpu_placement": cores.record() if cores else None,  # the CPU cores held, pinned to
        "engine": engine.name,  # the engine auto resolved to, if auto
        "threads": torch.get_num_threads(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "host": socket.gethostname(),
        "n_steps": state.step,
        "wall_time_s": round(state.elapsed_s, 3),
        "resumed_at_steps": state.resumed_at,
        "lr_schedule": lr_schedule_record(state.epochs_completed, state.lr_changed_at_steps),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metrics": metrics,
        "source": "train",
        "slurm": cluster_record(),
    }
    arrays = {**state.arrays, "train_idx": train_set}

    def fill(folder: Path) -> None:
        write_run_files(folder, arrays, info)
        with open(folder / MODEL_FILE, "wb") as fh:  # a full disk: an OSError with its errno
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, fh)

    publish_run(args.out, fill, kept_only=args.kept_only)
    Path(checkpoint).unlink(missing_ok=True)
    return args.out
