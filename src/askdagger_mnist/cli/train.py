"""CLI: one interactive SAG training run on MNIST (the script the ``train`` rule calls).

    python -m askdagger_mnist.cli.train --mode sensitivity --s-des 0.9 --rep 0 \\
        --data-root resources/mnist --out results/runs/sensitivity/sag/s0.9/rep0

Rerunning the same command after an interruption resumes from the checkpoint
(default ``<out>.checkpoint.pt``, beside the run directory); after the run has finished it
does nothing. Every flag and path is checked before any work starts.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import platform
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..data.mnist import load_mnist_train
from ..errors import UserError
from ..algorithm.loop import run_loop
from ..algorithm.metrics import whole_run_metrics
from ..algorithm.training import lr_schedule_record
from ..bookkeeping import Bookkeeping
from ..data.checkpoint import is_checkpoint_of
from ..data.rundir import (MODEL_FILE, atomic_dir, check_creatable, holds_run,
                           installed_versions, reporting_no_space, write_run_files)
from ..devices import check_device, device_description, placed_device
from ..engines import engine_for
from ..settings import (
    ENGINE_CHOICES, EXECUTION_DEFAULTS, MATMUL_PRECISIONS, MNIST_TRAIN_IMAGES, MODES, STREAM_STEPS, RunSettings,
)

DEFAULTS = RunSettings()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m askdagger_mnist.cli.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("experiment")
    g.add_argument("--mode", choices=MODES, required=True, help="what SAG tracks")
    g.add_argument("--s-des", type=float, required=True, help="desired value, in (0, 1)")
    g.add_argument("--rep", type=int, default=0, help="repetition (seeds the run)")
    g.add_argument("--variant", default="sag", help="variant name recorded in run.json")
    g.add_argument("--p-rand", type=float, default=DEFAULTS.p_rand, help="random query rate")
    g.add_argument("--no-normalization", action="store_true", help="SAG without normalization")
    g.add_argument("--no-imputation", action="store_true", help="SAG without imputation")
    g.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    g.add_argument("--update-every", type=int, default=DEFAULTS.update_every)
    g.add_argument("--mc-samples", type=int, default=DEFAULTS.mc_samples)
    g.add_argument("--dropout", type=float, default=DEFAULTS.dropout)
    g.add_argument("--n-min", type=int, default=DEFAULTS.n_min)
    g.add_argument("--n-rep", type=int, default=DEFAULTS.n_rep)
    g.add_argument("--max-steps", type=int, default=DEFAULTS.steps,
                   help=f"stream length in steps (default {STREAM_STEPS}; fewer: a short run)")
    g.add_argument("--seed-root", type=int, default=DEFAULTS.seed_root,
                   help="root entropy of all run seeds")
    g = p.add_argument_group("input, output, execution")
    g.add_argument("--data-root", type=Path, required=True,
                   help="folder holding MNIST/raw/*.gz")
    g.add_argument("--out", type=Path, required=True, help="run directory to create")
    g.add_argument("--checkpoint", type=Path, help="checkpoint file (default <out>.checkpoint.pt)")
    g.add_argument("--checkpoint-every", type=int, default=EXECUTION_DEFAULTS["checkpoint_every"],
                   help="steps between checkpoints (0: none)")
    g.add_argument("--engine", choices=ENGINE_CHOICES, default=EXECUTION_DEFAULTS["engine"],
                   help="plain: the readable reference; fast: the same algorithm, faster "
                   "kernels (docs/spec.md §7); auto: fast, measured faster on the CPU and on CUDA")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=EXECUTION_DEFAULTS["device"])
    g.add_argument("--jobs-per-gpu", type=int, default=EXECUTION_DEFAULTS["jobs_per_gpu"],
                   help="jobs that may share one GPU: its slots (docs/cluster.md)")
    g.add_argument("--gpu-slot-dir", type=Path, help="folder of the GPU slot locks (default: "
                   "<temp dir>/askdagger-mnist-gpu-slots-<uid>, shared by this user's jobs)")
    g.add_argument("--threads", type=int, default=EXECUTION_DEFAULTS["threads"],
                   help="torch intra-op threads")
    g.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS,
                   default=EXECUTION_DEFAULTS["matmul_precision"],
                   help="torch's float32 matmul precision: highest (float32 throughout) or, as "
                   "the authors' code sets, medium (docs/spec.md §8)")
    g.add_argument("--progress-every", type=int, default=50, help="steps between progress lines")
    g.add_argument("--halt-after", type=int, help=argparse.SUPPRESS)  # tests: simulated crash
    return p


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    try:
        return RunSettings(
            mode=args.mode, s_des=args.s_des, rep=args.rep, p_rand=args.p_rand,
            normalization=not args.no_normalization, imputation=not args.no_imputation,
            batch_size=args.batch_size, update_every=args.update_every,
            mc_samples=args.mc_samples, dropout=args.dropout, n_min=args.n_min,
            n_rep=args.n_rep, steps=args.max_steps, seed_root=args.seed_root,
        )
    except ValueError as exc:
        raise UserError(f"invalid setting: {exc}.") from exc


def check_args(args: argparse.Namespace, settings: RunSettings) -> Path:
    """Refuse, in one sentence and before any work or write, every flag that cannot work;
    returns the checkpoint path."""
    for flag, value, least in (("--threads", args.threads, 1),
                               ("--jobs-per-gpu", args.jobs_per_gpu, 1),
                               ("--progress-every", args.progress_every, 0),
                               ("--checkpoint-every", args.checkpoint_every, 0)):
        if value < least:
            raise UserError(f"{flag} must be >= {least}, not {value}.")
    if (n := settings.steps * settings.batch_size) > MNIST_TRAIN_IMAGES:
        raise UserError(
            f"--max-steps {settings.steps} x --batch-size {settings.batch_size} = {n} images, more "
            f"than the {MNIST_TRAIN_IMAGES} MNIST training images: lower --max-steps (at most "
            f"{MNIST_TRAIN_IMAGES // settings.batch_size}) or --batch-size."
        )
    if args.data_root.exists() and not args.data_root.is_dir():
        raise UserError(f"--data-root {args.data_root} is a file: point it at the folder holding "
                        "MNIST/raw/*.gz.")
    out = args.out
    checkpoint = args.checkpoint or out.with_name(out.name + ".checkpoint.pt")
    check_creatable(out, "--out")
    check_creatable(checkpoint, "--checkpoint")
    if checkpoint.is_dir():
        raise UserError(f"--checkpoint {checkpoint} is a folder: name a file (default: "
                        "<out>.checkpoint.pt, beside the run directory).")
    if out.absolute() in (checkpoint.absolute(), *checkpoint.absolute().parents):
        raise UserError(f"--checkpoint {checkpoint} lies inside the run directory --out {out}: "
                        "put it beside it (default: <out>.checkpoint.pt).")
    return checkpoint


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


@contextlib.contextmanager
def exclusive_run_lock(checkpoint: Path):
    """Hold ``<checkpoint>.lock`` for the whole run, so that a rerun cannot write the same run
    while an orphaned process (say, a job left behind by a killed Snakemake) still does."""
    lock_path = Path(f"{checkpoint}.lock")
    with reporting_no_space(lock_path):
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+")
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise UserError(
                f"another training process ({holder}) is still writing this run ({lock_path} is "
                "locked): wait for it to finish or kill it, then rerun."
            ) from None
        try:
            with reporting_no_space(lock_path):
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
                fh.flush()
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> tuple[Path, bool]:
    """Train the run into args.out; (out, False) when out already holds it, finished."""
    settings = settings_from_args(args)
    checkpoint = check_args(args, settings)
    recorded = {**settings.to_dict(), "variant": args.variant}  # run.json's "settings"
    if holds_run(args.out, recorded):
        if is_checkpoint_of(checkpoint, settings):  # left by a process killed after publishing
            with exclusive_run_lock(checkpoint):
                Path(checkpoint).unlink(missing_ok=True)
        return args.out, False
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    tune_malloc()
    check_device(args.device)
    # (No torch.use_deterministic_algorithms: it imports torch._inductor, ~2 s per job, and
    # the CPU kernels used here are deterministic anyway; tests/algorithm/test_loop.py checks
    # that a resumed run is bit-identical.)
    images, labels = load_mnist_train(args.data_root)
    with exclusive_run_lock(checkpoint):
        if holds_run(args.out, recorded):  # published meanwhile by a process now gone
            if is_checkpoint_of(checkpoint, settings):
                Path(checkpoint).unlink()
            return args.out, False
        # A GPU slot (gpu_slots.py) for the rest of the run; waits while all are taken.
        with placed_device(args.device, args.jobs_per_gpu, args.gpu_slot_dir) as placed:
            return _run_locked(args, settings, placed, images, labels, checkpoint), True


def _run_locked(args, settings, placed, images, labels, checkpoint: Path) -> Path:
    device, placement = placed
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
        "seed": {"entropy": str(seed_seq.entropy), "variant_key": settings.variant_key()},
        "versions": versions(),
        "device": device_description(device),
        "gpu_placement": placement,  # the GPU slot held (index, name, slot, visible device)
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

    def fill(tmp: Path) -> None:
        write_run_files(tmp, arrays, info)
        with open(tmp / MODEL_FILE, "wb") as fh:  # a full disk: an OSError with its errno
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, fh)

    atomic_dir(args.out, fill)
    Path(checkpoint).unlink(missing_ok=True)
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out, trained = run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if trained:
        print(f"run written to {out}", file=sys.stderr)
    else:
        print(f"{out} already holds this run, finished: nothing to do (delete it to train it "
              "again).", file=sys.stderr)
    return 0


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: every output is written, closed and renamed
    into place by then, and unloading torch's libraries takes ~0.7 s of a ~15 s job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
