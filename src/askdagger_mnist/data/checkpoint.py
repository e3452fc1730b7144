"""Mid-run checkpoints (docs/spec.md §6.3): everything a run needs to continue bit-identically.

A checkpoint is a ``torch.save`` of tensors, numbers and strings only (``torch.load`` reads it
with ``weights_only=True``), written atomically beside the run directory: a full disk leaves
the previous checkpoint as it was (``atomic.DiskFull``), so a rerun resumes from that one.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from ..algorithm.schedule import learning_rate
from ..algorithm.training import set_learning_rate
from ..errors import UserError
from ..settings import RESULTS_VERSION
from .atomic import atomic_file

# The layout of the file. What its run's results are is RESULTS_VERSION, recorded beside it:
# a checkpoint of another layout or results version is refused (the run starts over).
VERSION = 5


def save_checkpoint(path: Path, run) -> None:
    """Write the state of ``run`` (an ``algorithm.loop.Run``) to ``path``, atomically."""
    state, n_seen = run.state, run.state.step * run.settings.batch_size
    payload = {
        "version": VERSION,
        "results_version": RESULTS_VERSION,
        "engine": run.engine.name,
        "settings": run.settings.to_dict(),
        "step": state.step,
        "k": state.k,
        "elapsed_s": state.elapsed_s,
        "resumed_at": list(state.resumed_at),
        "epochs_completed": state.epochs_completed,
        "lr_changed_at_steps": list(state.lr_changed_at_steps),
        "unseen": torch.from_numpy(state.unseen.copy()),
        "arrays": {name: torch.from_numpy(a[:n_seen].copy()) for name, a in state.arrays.items()},
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "numpy_rng": run.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": device_rng_state(run_device(run)),
        "python_rng": random.getstate(),
    }
    # Through a Python file object: a full disk is then an OSError with its errno (torch's own
    # writer reports only "unexpected pos"); atomic_file turns it into one sentence.
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)


def is_checkpoint_of(path: Path, settings) -> bool:
    """Whether ``path`` holds a checkpoint of this format for a run of ``settings``
    (a ``RunSettings``): what may be deleted once that run has finished."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, torn or foreign: not known to be one
        return False
    return (isinstance(payload, dict) and payload.get("version") == VERSION
            and payload.get("results_version") == RESULTS_VERSION
            and payload.get("settings") == settings.to_dict())


def load_checkpoint(path: Path, run) -> None:
    """Restore ``run`` (just started, at step 0) from the checkpoint at ``path``."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file
        raise UserError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it to start the "
            "run from step 0 (or, if it is a file of yours, choose another --checkpoint)."
        ) from exc
    made_by = ((payload.get("version"), payload.get("results_version"))
               if isinstance(payload, dict) else (None, None))
    if made_by != (VERSION, RESULTS_VERSION):
        raise UserError(
            f"checkpoint {path} was written by another version of askdagger-mnist (format "
            f"{made_by[0]}, results version {made_by[1]}; this one writes {VERSION}, "
            f"{RESULTS_VERSION}): delete it to start the run from step 0."
        )
    engine = payload.get("engine")
    if engine != run.engine.name:
        raise UserError(
            f"checkpoint {path} was written by the {engine} engine: resume it with --engine "
            f"{engine} (config key engine), or delete it to start the run from step 0."
        )
    if payload.get("settings") != run.settings.to_dict():
        raise UserError(
            f"checkpoint {path} was written for other settings: delete it, or rerun with the "
            "settings it was made with."
        )
    state = run.state
    state.step, state.k = int(payload["step"]), int(payload["k"])
    state.elapsed_s = float(payload["elapsed_s"])
    state.resumed_at = list(payload["resumed_at"]) + [state.step]
    state.unseen = payload["unseen"].numpy().copy()
    for name, saved in payload["arrays"].items():
        state.arrays[name][: len(saved)] = saved.numpy()
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.rng.bit_generator.state = payload["numpy_rng"]
    torch.set_rng_state(payload["torch_rng"])
    restore_device_rng(payload["cuda_rng"], run_device(run))
    random.setstate(_as_tuple(payload["python_rng"]))
    state.epochs_completed = int(payload["epochs_completed"])
    state.lr_changed_at_steps = [int(x) for x in payload["lr_changed_at_steps"]]
    set_learning_rate(run.optimizer, learning_rate(state.epochs_completed))


def run_device(run) -> torch.device:
    return next(run.model.parameters()).device


def device_rng_state(device: torch.device):
    """The state of the generator the run draws from on its GPU (crop offsets, §1.3), or None
    on the CPU. Only the run's own GPU: a resumed job may be placed on another GPU
    (gpu_slots), and there it must continue this stream, not that GPU's."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def restore_device_rng(saved, device: torch.device) -> None:
    """Put ``saved`` (``device_rng_state`` of the run's GPU when it was written) into the
    generator of the GPU the run now uses."""
    if device.type == "cuda" and saved is not None:
        torch.cuda.set_rng_state(saved, device)


def _as_tuple(obj):
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj
