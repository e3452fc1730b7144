"""Run the authors' original train() for chosen configurations and repetitions, on the CPU.

Runs inside the virtualenv made by bench/original/make_env.sh (their pins), importing their
code, unedited, from a clone of their repository:

    ORIG=~/.cache/askdagger-mnist/original-venv/bin/python
    $ORIG bench/original/run_original.py --source PATH/TO/askdagger_mnist \\
        --mnist-raw PATH/TO/MNIST/raw --work WORKDIR \\
        --mode specificity --s-des 0.9 --reps 10 20 30 [--threads 1]

PATH/TO/askdagger_mnist is a clone of https://github.com/pouyan-asg/askdagger_mnist (a public
fork of askdagger/askdagger_mnist; tested at commit 370588b). Their ``train()`` writes
``results_{mode}/r{p_rand}_s{s_des}_u..._i..._b..._e.../{rep}/results.npy`` under the current
directory, so each run is made inside WORKDIR, which also holds a private copy of the four MNIST
``.gz`` files (their MNIST dataset unpacks next to them; the user's folder is never written).
A run whose ``results.npy`` exists is skipped (their own rule), so an interrupted batch resumes.
After each run one line of JSON (mode, s_des, rep, seconds, threads, versions) is appended to
WORKDIR/runs.jsonl. ``bench/original/pack.py`` packs WORKDIR into the authors' zip layout.

Repetitions: their step t of repetition i is seeded with -1 + 100 i + 2 (t + 1), so repetitions
less than 10 apart reuse each other's per-step seeds (i + 1 at step t = i at step t + 50). Use
repetitions at least 10 apart (0, 10, 20, ...) for independent runs.

This file never imports askdagger_mnist: it runs with the original's packages only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# The packages whose versions decide their numbers, recorded with every run.
RECORDED = ("torch", "torchvision", "torch-uncertainty", "lightning", "numpy")


def prepare_workdir(work: Path, mnist_raw: Path) -> None:
    """WORKDIR/data/MNIST/raw with a copy of the four .gz files their data module reads."""
    raw = work / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        src = mnist_raw / name
        if not src.is_file():
            sys.exit(f"error: {src} is missing; --mnist-raw must name a folder holding {', '.join(MNIST_FILES)}.")
        if not (raw / name).is_file():
            shutil.copyfile(src, raw / f"{name}.part")
            os.replace(raw / f"{name}.part", raw / name)


class Stop(Exception):
    """Raised by a wrapper around one of their functions to end their train() early, once a
    script has seen what it came for (record_lockstep.py, record_sag.py, first_steps.py)."""


def original_arguments(p: argparse.ArgumentParser) -> None:
    """--source, --mnist-raw and --work: what every script that runs their code takes."""
    p.add_argument("--source", type=Path, required=True, help="a clone of the authors' repository")
    p.add_argument("--mnist-raw", type=Path, required=True, help="folder with the four MNIST .gz files")
    p.add_argument("--work", type=Path, required=True, help="where their results_{mode}/ trees are written")


def enter_original(source: Path, mnist_raw: Path, work: Path) -> Path:
    """Make ready to import and run their train(): WORK prepared (prepare_workdir), their src/
    first on sys.path, the process moved into WORK (their train() reads data/ and writes
    results_{mode}/ relative to it), wandb off. Returns WORK, resolved."""
    src = source / "src"
    if not (src / "askdagger_mnist" / "train.py").is_file():
        sys.exit(f"error: {source} is not a clone of the authors' askdagger_mnist (no src/askdagger_mnist/train.py).")
    work = work.resolve()
    prepare_workdir(work, mnist_raw.resolve())
    sys.path.insert(0, str(src.resolve()))
    os.chdir(work)
    os.environ.setdefault("WANDB_MODE", "disabled")
    return work


def run_dir_name(p_rand: float, s_des: float, normalization: bool, impute: bool,
                 batch_size: int, update_every: int) -> str:
    """Their directory name for one configuration (train() builds it with the same f-string)."""
    return f"r{p_rand}_s{s_des}_u{normalization}_i{impute}_b{batch_size}_e{update_every}"


def versions() -> dict[str, str]:
    out = {}
    for name in RECORDED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    original_arguments(p)
    p.add_argument("--mode", required=True, choices=("sensitivity", "specificity", "success"))
    p.add_argument("--s-des", type=float, default=0.9)
    p.add_argument("--p-rand", type=float, default=0.1)
    p.add_argument("--no-normalization", action="store_true")
    p.add_argument("--no-impute", action="store_true")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--update-every", type=int, default=5)
    p.add_argument("--reps", type=int, nargs="+", required=True)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--matmul-precision", default="theirs", choices=("theirs", "highest"),
                   help="theirs: as their train.py sets it (\"medium\"); highest: full float32, "
                        "the control that isolates what their setting changes")
    args = p.parse_args(argv)

    work = enter_original(args.source, args.mnist_raw, args.work)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from askdagger_mnist.train import train  # theirs, from --source (sets "medium")
    if args.matmul_precision == "highest":
        torch.set_float32_matmul_precision("highest")

    kwargs = dict(p_rand=args.p_rand, s_des=args.s_des, u_normalization=not args.no_normalization,
                  impute=not args.no_impute, batch_size=args.batch_size, update_every=args.update_every)
    name = run_dir_name(kwargs["p_rand"], kwargs["s_des"], kwargs["u_normalization"], kwargs["impute"],
                        kwargs["batch_size"], kwargs["update_every"])
    for rep in args.reps:
        done = work / f"results_{args.mode}" / name / str(rep) / "results.npy"
        if done.is_file():
            print(f"{args.mode} s_des={args.s_des} rep {rep}: already made, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        train(iteration=rep, mode=args.mode, accelerator="cpu", log=False, verbose=False,
              save=True, overwrite=False, **kwargs)
        seconds = time.perf_counter() - t0
        line = {"mode": args.mode, "s_des": args.s_des, "rep": rep, "seconds": round(seconds, 1),
                "threads": torch.get_num_threads(), "versions": versions(), "config": name,
                "matmul_precision": torch.get_float32_matmul_precision()}
        with open(work / "runs.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"{args.mode} s_des={args.s_des} rep {rep}: {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
