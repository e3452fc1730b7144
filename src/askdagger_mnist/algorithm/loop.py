"""The interactive loop of one run (spec section 3), with atomic mid-run checkpoints.

Randomness: a numpy Generator (stream draws, MC-dropout and training dropout masks, random
queries, SAG imputations) and torch's global generator (model initialisation, training
shuffles and crops), both derived from the run's SeedSequence. A checkpoint holds every state
needed to continue, so a resumed run on CPU is bit-identical to one never interrupted.
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .backprop import loss_and_grads
from .errors import UserError
from .metrics import whole_run_metrics
from .masks import draw_masks
from .model import LeNet, mc_uncertainty, normalize_pixels, train_transform
from .optim import NesterovSGD
from .runio import atomic_file
from .sag import SagConfig, sag_threshold
from .settings import RunSettings

CHECKPOINT_VERSION = 2  # 2: dropout masks from the numpy Generator
TRACKED = {"sensitivity": "sensitivity", "specificity": "specificity", "success": "system_success"}


@dataclass
class LoopState:
    """Everything that changes during a run (what a checkpoint stores)."""

    step: int  # next step to run
    k: int
    unseen: np.ndarray
    arrays: dict  # name -> preallocated array over the stream
    elapsed_s: float = 0.0
    resumed_at: list = field(default_factory=list)
    phase_s: dict = field(default_factory=lambda: {"query": 0.0, "sag": 0.0, "update": 0.0})

    def train_set(self, n_seen: int) -> np.ndarray:
        """The training set: the queried indices among the first ``n_seen``, in stream order."""
        return self.arrays["stream_idx"][:n_seen][self.arrays["q"][:n_seen] != 0]


def _seeds(settings: RunSettings) -> tuple[np.random.Generator, int]:
    np_seq, torch_seq = settings.seed_sequence().spawn(2)
    torch_seed = int(torch_seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.Generator(np.random.PCG64(np_seq)), torch_seed


def new_state(settings: RunSettings, n_train: int) -> LoopState:
    n = settings.steps * settings.batch_size
    if n > n_train:
        raise UserError(
            f"steps x batch_size = {n} exceeds the {n_train} MNIST training images: "
            "lower steps (max_steps) or batch_size."
        )
    arrays = {
        "u": np.zeros(n, np.float64),
        "k": np.zeros(n, np.int64),
        "g": np.zeros(n, np.float64),
        "c": np.zeros(n, np.int8),
        "r": np.zeros(n, np.int8),
        "q": np.zeros(n, np.int8),
        "q_a": np.zeros(n, np.int8),
        "stream_idx": np.zeros(n, np.int64),
    }
    return LoopState(0, 0, np.arange(n_train, dtype=np.int64), arrays)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, settings: RunSettings, state: LoopState, model, optimizer,
                    np_rng: np.random.Generator) -> None:
    payload = {
        "version": CHECKPOINT_VERSION,
        "settings": settings.to_dict(),
        "step": state.step,
        "k": state.k,
        "elapsed_s": state.elapsed_s,
        "resumed_at": list(state.resumed_at),
        "unseen": torch.from_numpy(state.unseen.copy()),
        "arrays": {name: torch.from_numpy(a[: state.step * settings.batch_size].copy())
                   for name, a in state.arrays.items()},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "numpy_rng": np_rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": random.getstate(),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, settings: RunSettings, state: LoopState, model, optimizer,
                    np_rng: np.random.Generator) -> None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file
        raise UserError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it to start the "
            "run from step 0."
        ) from exc
    if payload.get("version") != CHECKPOINT_VERSION:
        raise UserError(
            f"checkpoint {path} was written by another version of askdagger-mnist (format "
            f"{payload.get('version')}, this one reads {CHECKPOINT_VERSION}): delete it to start "
            "the run from step 0."
        )
    if payload.get("settings") != settings.to_dict():
        raise UserError(
            f"checkpoint {path} was written for other settings: delete it, or rerun with the "
            "settings it was made with."
        )
    state.step, state.k = int(payload["step"]), int(payload["k"])
    state.elapsed_s = float(payload["elapsed_s"])
    state.resumed_at = list(payload["resumed_at"]) + [state.step]
    state.unseen = payload["unseen"].numpy().copy()
    for name, saved in payload["arrays"].items():
        state.arrays[name][: len(saved)] = saved.numpy()
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    np_rng.bit_generator.state = payload["numpy_rng"]
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    random.setstate(_as_tuple(payload["python_rng"]))


def _as_tuple(obj):
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


# --------------------------------------------------------------------------- the loop


def train_update(model, optimizer, images: torch.Tensor, labels: torch.Tensor,
                 train_set: np.ndarray, n_steps: int, batch_size: int, dropout: float,
                 rng: np.random.Generator) -> None:
    """``n_steps`` SGD steps on mini-batches from a fresh shuffled pass over ``train_set``."""
    pool = torch.from_numpy(train_set)
    batches, perm, pos = [], torch.randperm(len(pool)), 0
    for _ in range(n_steps):
        if pos >= len(perm):  # the pass ran out: a new shuffled pass
            perm, pos = torch.randperm(len(pool)), 0
        batches.append(pool[perm[pos : pos + batch_size]])
        pos += batch_size
    # Crops and dropout masks of all the update's mini-batches at once (fewer, larger calls).
    chosen = torch.cat(batches).to(images.device)
    x_all, y_all = train_transform(images[chosen]), labels[chosen]
    masks_all = draw_masks(rng, len(chosen), 1, dropout, x_all.device)
    start = 0
    for batch in batches:
        stop = start + len(batch)
        _, grads = loss_and_grads(model, x_all[start:stop], y_all[start:stop],
                                  masks_all.rows(start, stop))
        optimizer.step(grads)
        start = stop


def progress_line(settings: RunSettings, state: LoopState, elapsed: float) -> str:
    n = state.step * settings.batch_size
    a = state.arrays
    m = whole_run_metrics(a["c"][:n], a["q"][:n])
    tracked = TRACKED[settings.mode]
    return (
        f"step {state.step}/{settings.steps}  elapsed {elapsed:.1f}s  "
        f"query rate {m['query_rate']:.3f}  novice acc {m['novice_success']:.3f}  "
        f"{tracked} {m[tracked]:.3f} (target {settings.s_des:g})"
    )


def run_loop(
    settings: RunSettings,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    checkpoint: Optional[Path] = None,
    checkpoint_every: int = 50,
    progress_every: int = 50,
    halt_after: Optional[int] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
):
    """Run (or resume) one interactive run. Returns (state, model).

    ``halt_after``: stop right after the checkpoint of that step, as a crash would (tests).
    """
    np_rng, torch_seed = _seeds(settings)
    torch.manual_seed(torch_seed)
    random.seed(torch_seed)
    model = LeNet(settings.dropout).to(device)
    # One SGD (lr 0.1, Nesterov momentum 0.9, weight decay 5e-4) for the whole run.
    optimizer = NesterovSGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    state = new_state(settings, len(images))
    if checkpoint is not None and Path(checkpoint).is_file():
        load_checkpoint(checkpoint, settings, state, model, optimizer, np_rng)
        log(f"resuming from checkpoint at step {state.step} ({checkpoint})")
    images = images.to(device)
    labels = labels.to(device)
    sag_config = SagConfig(settings.mode, settings.s_des, settings.p_rand,
                           settings.normalization, settings.imputation, settings.n_min,
                           settings.n_rep)
    B, a = settings.batch_size, state.arrays
    started = time.perf_counter() - state.elapsed_s
    while state.step < settings.steps:
        step = state.step
        lo, hi = step * B, (step + 1) * B
        pos = np.sort(np_rng.choice(len(state.unseen), B, replace=False))
        idx = state.unseen[pos]
        state.unseen = np.delete(state.unseen, pos)
        t0 = time.perf_counter()
        idx_t = torch.from_numpy(idx).to(device)
        u, pred = mc_uncertainty(model, normalize_pixels(images[idx_t]), settings.mc_samples,
                                 settings.dropout, np_rng)
        u = u.double().cpu().numpy()
        c = (pred == labels[idx_t]).cpu().numpy()
        a["stream_idx"][lo:hi], a["u"][lo:hi], a["k"][lo:hi], a["c"][lo:hi] = idx, u, state.k, c
        t1 = time.perf_counter()
        gamma = sag_threshold(a["u"][:hi], a["r"][:hi], a["k"][:hi], sag_config, np_rng)
        t2 = time.perf_counter()
        state.phase_s["query"] += t1 - t0
        state.phase_s["sag"] += t2 - t1
        q_rand = np_rng.random(B) < settings.p_rand
        q_a = u >= gamma
        q = q_rand | q_a
        a["g"][lo:hi], a["q_a"][lo:hi], a["q"][lo:hi] = gamma, q_a, q
        a["r"][lo:hi] = np.where(q, np.where(c, 1, -1), 0)
        if step > 0 and step % settings.update_every == 0:
            t3 = time.perf_counter()
            train_update(model, optimizer, images, labels, state.train_set(hi),
                         settings.update_every, B, settings.dropout, np_rng)
            state.phase_s["update"] += time.perf_counter() - t3
            state.k += 1
        state.step += 1
        state.elapsed_s = time.perf_counter() - started
        if progress_every and (state.step % progress_every == 0 or state.step == settings.steps):
            log(progress_line(settings, state, state.elapsed_s))
        if checkpoint is not None and checkpoint_every and state.step % checkpoint_every == 0 \
                and state.step < settings.steps:
            save_checkpoint(checkpoint, settings, state, model, optimizer, np_rng)
            if halt_after is not None and state.step >= halt_after:
                raise SystemExit(3)
    if progress_every:
        log("time by phase (this process): " + ", ".join(
            f"{name} {secs:.1f}s" for name, secs in state.phase_s.items()))
    return state, model
