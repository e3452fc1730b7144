"""The command-line flags the rules pass, built from the checked config in one place each:
the settings of a training run (the train rule's params: a changed setting re-runs exactly
the runs it affects), the verdict's settings and the MNIST mirrors. Standard library only."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Mapping


def train_settings(config: Mapping, variant: str) -> str:
    """Flags of every setting that changes a run's results (besides mode, s_des, rep and the
    variant's name), in the train CLI's spelling."""
    v = config["variants"][variant]
    flags = [
        f"--p-rand {v['p_rand']!r}",
        *([] if v["normalization"] else ["--no-normalization"]),
        *([] if v["imputation"] else ["--no-imputation"]),
        f"--batch-size {config['batch_size']}",
        f"--update-every {config['update_every']}",
        f"--mc-samples {config['mc_samples']}",
        f"--dropout {config['dropout']!r}",
        f"--n-min {config['n_min']}",
        f"--n-rep {config['n_rep']}",
        f"--seed-root {config['seed_root']}",
    ]
    if config["max_steps"] is not None:
        flags.append(f"--max-steps {config['max_steps']}")
    return " ".join(flags)


def reproduction_flags(config: Mapping) -> str:
    r = config["reproduction"]
    return (f"--margin-tracked {r['margins']['tracked']!r} "
            f"--margin-others {r['margins']['others']!r} --min-runs {r['min_runs']} "
            f"--curve-after-step {r['curve_after_step']}")


def mirror_flags(config: Mapping) -> str:
    return " ".join(f"--mirror {shlex.quote(url)}" for url in config["mnist_mirrors"])


def mnist_download_command(config: Mapping, manifest: str) -> str:
    """What download_mnist runs, with absolute paths: for messages."""
    root = shlex.quote(str(Path(config["mnist_root"]).absolute()))
    return (f"python -m askdagger_mnist.cli.download_mnist --root {root} {mirror_flags(config)} "
            f"--require train --manifest {shlex.quote(str(Path(manifest).absolute()))}")
