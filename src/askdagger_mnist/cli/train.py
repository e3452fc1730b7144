"""CLI: one interactive SAG training run on MNIST (the script the ``train`` rule calls).

    python -m askdagger_mnist.cli.train --mode sensitivity --s-des 0.9 --rep 0 \\
        --data-root resources/mnist --out results/runs/sensitivity/sag/s0.9/rep0

Rerunning the same command after an interruption resumes from the checkpoint
(default ``<out>.checkpoint.pt``, beside the run directory); after the run has finished it
does nothing, and if the run directory was deleted meanwhile (as Snakemake deletes the output
of a job it reruns) it is put back from its kept copy (``.kept/<name>``, beside it) in well
under a second, without training. Every flag and path is checked before any work starts.
Torch is imported only to train.

Several runs of one configuration in one process: ``--rep`` and ``--out`` once per run, or
``--and-next K`` (the next K repetitions too, into the kept copies of ``rep<R>`` beside --out,
which their own jobs restore: config key runs_per_job, experiment/batches.py). Each runs as alone, bit for bit (its lock, checkpoint,
kept copy, run.json, seed); interpreter, torch, MNIST and a CUDA context are paid once. The first
error stops the command; run it again to go on (finished runs are kept).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..data.kept_runs import kept_copy_holds, kept_copy_of, restore_kept_run
from ..data.atomic import remove_paths
from ..data.rundir import check_creatable
from ..errors import UserError, stderr_line
from ..experiment.naming import rep_dir_name
from ..runner.cpu_slots import cpu_slots
from .common import run_command
from .run_lock import exclusive_run_lock
from .run_state import (
    default_checkpoint, holds_current_run, remove_left_checkpoint, run_temporaries,
)
from ..settings import (
    ENGINE_CHOICES, EXECUTION_DEFAULTS, MATMUL_PRECISIONS, MNIST_TRAIN_IMAGES, MODES,
    SAG_VARIANT, STREAM_STEPS, RunSettings,
)

DEFAULTS = RunSettings()


def build_parser(several: bool = False) -> argparse.ArgumentParser:
    """The train command's flags; ``several``: --rep and --out may be given once per run (each a
    list then, ``runs_asked`` pairs them), as the command line takes them."""
    per_run = {"action": "append"} if several else {}
    rep_default = {} if several else {"default": DEFAULTS.rep}  # several: None until given
    p = argparse.ArgumentParser(
        prog="python -m askdagger_mnist.cli.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("experiment")
    g.add_argument("--mode", choices=MODES, required=True, help="what SAG tracks")
    g.add_argument("--s-des", type=float, required=True, help="desired value, in (0, 1)")
    g.add_argument("--rep", type=int, help=f"repetition (seeds the run; default {DEFAULTS.rep}); "
                   "with --out, once per run to train several", **per_run, **rep_default)
    g.add_argument("--variant", default=SAG_VARIANT, help="variant name recorded in run.json")
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
    g.add_argument("--out", type=Path, required=True, help="run directory to create (once per "
                   "--rep)", **per_run)
    g.add_argument("--and-next", type=int, default=0, metavar="K",
                   help="also train repetitions rep+1..rep+K into the kept copies of rep<R> "
                   "beside --out, for their own train jobs to restore (runs_per_job)")
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
    g.add_argument("--cpu-slots", action=argparse.BooleanOptionalAction,  # docs/cluster.md
                   default=EXECUTION_DEFAULTS["cpu_slots"], help="hold --threads CPU cores, pinned")
    g.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS,
                   default=EXECUTION_DEFAULTS["matmul_precision"],
                   help="torch's float32 matmul precision: highest (float32 throughout) or, as "
                   "the authors' code sets, medium (docs/spec.md §8)")
    g.add_argument("--progress-every", type=int, default=50, help="steps between progress lines")
    g.add_argument("--halt-after", type=int, help=argparse.SUPPRESS)  # tests: simulated crash
    p.set_defaults(kept_only=False)  # True for the runs --and-next adds (runs_asked)
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
    checkpoint = args.checkpoint or default_checkpoint(out)
    check_creatable(out, "--out")
    check_creatable(checkpoint, "--checkpoint")
    if checkpoint.is_dir():
        raise UserError(f"--checkpoint {checkpoint} is a folder: name a file (default: "
                        "<out>.checkpoint.pt, beside the run directory).")
    if out.absolute() in (checkpoint.absolute(), *checkpoint.absolute().parents):
        raise UserError(f"--checkpoint {checkpoint} lies inside the run directory --out {out}: "
                        "put it beside it (default: <out>.checkpoint.pt).")
    return checkpoint


def run(args: argparse.Namespace) -> tuple[Path, str]:
    """Make the run args.out; returns (out, how): "trained"; "restored" from its kept copy
    (data/kept_runs.py) without training; "present" when out already held it."""
    settings = settings_from_args(args)
    checkpoint = check_args(args, settings)
    recorded = {**settings.to_dict(), "variant": args.variant}  # run.json's "settings"
    if args.kept_only:
        return keep_for_its_job(args, settings, checkpoint, recorded)
    if holds_current_run(args.out, recorded):
        if Path(checkpoint).is_file() or run_temporaries(args.out, checkpoint):
            with exclusive_run_lock(checkpoint):
                remove_paths(run_temporaries(args.out, checkpoint))
                remove_left_checkpoint(args.out, checkpoint, settings)
        return args.out, "present"
    with exclusive_run_lock(checkpoint):
        remove_paths(run_temporaries(args.out, checkpoint))
        if holds_current_run(args.out, recorded):  # published meanwhile by a process now gone
            remove_left_checkpoint(args.out, checkpoint, settings)
            return args.out, "present"
        if restore_kept_run(args.out, recorded):
            remove_left_checkpoint(args.out, checkpoint, settings)
            return args.out, "restored"
        return train_run(args, settings, checkpoint), "trained"


def keep_for_its_job(args, settings: RunSettings, checkpoint: Path,
                     recorded: dict) -> tuple[Path, str]:
    """A run of --and-next: trained into its kept copy only, which the run directory's own
    train job restores (experiment/batches.py); that directory is that job's output, and
    whatever it holds (an older run, before Snakemake deletes it) is not touched here."""
    with exclusive_run_lock(checkpoint):
        remove_paths(run_temporaries(args.out, checkpoint))
        if kept_copy_holds(args.out, recorded):
            remove_left_checkpoint(args.out, checkpoint, settings)
            return args.out, "kept"
        return train_run(args, settings, checkpoint), "trained-kept"


def train_run(args, settings: RunSettings, checkpoint: Path) -> Path:
    """Train the run (the caller holds its lock) on CPU cores of its own, taken before torch's
    import; torch is imported only here."""
    with cpu_slots(args.threads, args.cpu_slots) as cores:
        from ..runner.train_job import train_and_publish

        return train_and_publish(args, settings, checkpoint, cores)


def runs_asked(args: argparse.Namespace) -> list[argparse.Namespace]:
    """The command's runs, one namespace each (its --rep and --out single values), from the
    lists of a ``build_parser(several=True)`` command line; each run's flags and paths checked
    before any of them starts."""
    reps, outs = args.rep or [DEFAULTS.rep], args.out
    if args.and_next:
        reps, outs = with_next(reps, outs, args.and_next)
    if len(reps) != len(outs):
        raise UserError(f"give --rep and --out once per run, in pairs: got {len(reps)} --rep "
                        f"and {len(outs)} --out.")
    if len(outs) > 1:
        if args.checkpoint is not None:
            raise UserError("--checkpoint names the checkpoint of one run: with several runs "
                            "leave it out (each run's is <out>.checkpoint.pt, beside it).")
        for what, values in (("--out", [os.path.normpath(o.absolute()) for o in outs]),
                             ("--rep", reps)):
            if twice := [v for i, v in enumerate(values) if v in values[:i]]:
                raise UserError(f"{what} {twice[0]} is asked for twice: give each run once.")
    # The runs --and-next adds go into their kept copies only (keep_for_its_job).
    runs = [argparse.Namespace(**{**vars(args), "rep": rep, "out": out,
                                  "kept_only": bool(args.and_next) and i > 0})
            for i, (rep, out) in enumerate(zip(reps, outs))]
    for one in runs:
        check_args(one, settings_from_args(one))
    return runs


def with_next(reps: list, outs: list[Path], more: int) -> tuple[list[int], list[Path]]:
    """One run and the next ``more`` repetitions, in directories named as the workflow names
    them (``rep<R>``, beside the first)."""
    if more < 0:
        raise UserError(f"--and-next must be >= 0, not {more}.")
    if len(reps) != 1 or len(outs) != 1:
        raise UserError("--and-next adds the next repetitions to one run: give --rep and --out "
                        "once.")
    first = reps[0]
    if outs[0].name != rep_dir_name(first):
        raise UserError(f"--and-next names the next runs' directories after --out, which must "
                        f"then end in {rep_dir_name(first)} (the run directory of --rep {first}), "
                        f"not {outs[0].name}.")
    reps = list(range(first, first + more + 1))
    return reps, [outs[0].with_name(rep_dir_name(rep)) for rep in reps]


def run_each(runs: list[argparse.Namespace]) -> list[tuple[Path, str]]:
    """``run`` each of ``runs`` in turn, saying which run each line is about when there are
    several, and what became of each as soon as it is done."""
    made = []
    for i, one in enumerate(runs, start=1):
        if len(runs) > 1:
            stderr_line(f"run {i} of {len(runs)}: {one.out}")
        made.append(run(one))
        report(made[-1])
    return made


def main(argv: list[str] | None = None) -> int:
    args = build_parser(several=True).parse_args(argv)
    return run_command(lambda: run_each(runs_asked(args)), stopped=resumable)


def resumable(by: str) -> str:
    """The line of an interrupted run: its checkpoint is kept on purpose (never the run
    directory, which appears only once the run is whole)."""
    return (f"stopped by {by}; run the same command again: the run resumes from its last "
            "checkpoint (from the start if it had none yet).")


def report(made: tuple[Path, str]) -> None:
    """One line on stderr saying what ``run`` did (its result: out, how)."""
    out, how = made
    kept = kept_copy_of(out)
    print({
        "trained": f"run written to {out}",
        "restored": f"{out} restored from its kept copy {kept} (made with these settings and "
                    "results version): nothing trained. Delete both to train it again.",
        "present": f"{out} already holds this run, finished: nothing to do (delete it and {kept} "
                   "to train it again).",
        "trained-kept": f"run kept in {kept}, for the train job of {out} to restore",
        "kept": f"{kept} already holds this run, for the train job of {out} to restore: "
                "nothing to do",
    }[how], file=sys.stderr)


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: every output is written, closed and renamed
    into place by then, and unloading torch's libraries takes ~0.7 s of a ~15 s job."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
