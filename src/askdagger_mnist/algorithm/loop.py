"""One interactive run (docs/spec.md §3), step by step.

``run_loop`` builds the run (§6.1: seeds, model, optimizer, state), then repeats
``interactive_step``, whose numbered comments are the steps of §3. The engine (``engines``)
supplies the four parts that have a plain and a fast form; an observer (``bookkeeping``) gets
the run after every step for timing, progress lines and checkpoints, so nothing here is
about anything but the algorithm.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from ..settings import RunSettings
from .masks import draw_masks
from .model import LeNet, normalize_pixels, uncertainty_from_probs
from .sag import SagConfig
from .schedule import milestones_reached
from .training import update_model

STREAM_ARRAYS = {  # name -> dtype of the arrays over the stream (docs/spec.md §3)
    "u": np.float64, "k": np.int64, "g": np.float64, "c": np.int8, "r": np.int8,
    "q": np.int8, "q_a": np.int8, "stream_idx": np.int64,
}


@dataclass
class LoopState:
    """Everything that changes during a run (what a checkpoint stores besides the model,
    the optimizer and the generators)."""

    step: int  # next step to run
    k: int  # update count
    unseen: np.ndarray  # MNIST training indices not yet streamed
    arrays: dict  # name -> preallocated array over the stream
    elapsed_s: float = 0.0
    resumed_at: list = field(default_factory=list)
    epochs_completed: int = 0  # training epochs completed, the learning-rate counter (§3.5)
    lr_changed_at_steps: list = field(default_factory=list)  # one step per milestone reached

    def train_set(self, n_seen: int) -> np.ndarray:
        """The training set: the queried indices among the first ``n_seen``, in stream order."""
        return self.arrays["stream_idx"][:n_seen][self.arrays["q"][:n_seen] != 0]


@dataclass
class Run:
    """One run in progress: its settings, engine, model, optimizer, generator and state."""

    settings: RunSettings
    engine: object  # engines.Engine
    model: LeNet
    optimizer: object
    rng: np.random.Generator  # the run's numpy Generator (§6.2)
    state: LoopState
    sag_config: SagConfig


class Observer:
    """What the loop tells about its progress; this one does nothing."""

    def started(self, run: Run) -> None:
        """Before the first step (a checkpoint may be loaded into ``run`` here)."""

    def timer(self, phase: str):
        return contextlib.nullcontext()

    def step_done(self, run: Run) -> None:
        """After every step."""

    def finished(self, run: Run) -> None:
        """After the last step."""


def run_seeds(settings: RunSettings) -> tuple[np.random.Generator, int]:
    """§6.1: the run's numpy Generator and the seed of torch's generator."""
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
    arrays = {name: np.zeros(n, dtype) for name, dtype in STREAM_ARRAYS.items()}
    return LoopState(0, 0, np.arange(n_train, dtype=np.int64), arrays)


def start_run(settings: RunSettings, engine, device: torch.device, n_train: int) -> Run:
    """A new run at step 0: seeded generators, a freshly initialised LeNet, the optimizer."""
    rng, torch_seed = run_seeds(settings)
    torch.manual_seed(torch_seed)
    random.seed(torch_seed)
    model = LeNet(settings.dropout).to(device)
    return Run(settings, engine, model, engine.make_optimizer(model), rng,
               new_state(settings, n_train), SagConfig.from_settings(settings))


def interactive_step(run: Run, images: torch.Tensor, labels: torch.Tensor,
                     timer=lambda phase: contextlib.nullcontext()) -> None:
    """One step of §3 (the step ``run.state.step``)."""
    settings, state, engine, rng = run.settings, run.state, run.engine, run.rng
    arrays, B = state.arrays, settings.batch_size
    lo, hi = state.step * B, (state.step + 1) * B
    # §3.1 Draw the batch uniformly, without replacement, from the unseen images.
    pos = np.sort(rng.choice(len(state.unseen), B, replace=False))
    idx = state.unseen[pos]
    state.unseen = np.delete(state.unseen, pos)
    # §3.2 The query pass: MC-dropout uncertainty u and prediction; c is privileged.
    with timer("query"):
        idx_t = torch.from_numpy(idx).to(images.device)
        masks = draw_masks(rng, B, settings.mc_samples, settings.dropout, images.device)
        probs = engine.mc_probs(run.model, normalize_pixels(images[idx_t]), masks)
        u, pred = uncertainty_from_probs(probs)
        u = u.double().cpu().numpy()
        c = (pred == labels[idx_t]).cpu().numpy()
    arrays["stream_idx"][lo:hi], arrays["u"][lo:hi] = idx, u
    arrays["k"][lo:hi], arrays["c"][lo:hi] = state.k, c
    # §3.3 The SAG threshold over everything seen, this batch included with r = 0.
    with timer("sag"):
        gamma = engine.sag_threshold(arrays["u"][:hi], arrays["r"][:hi], arrays["k"][:hi],
                                     run.sag_config, rng)
    arrays["g"][lo:hi] = gamma
    # §3.4 Random and active queries; the teacher's reward for the queried samples.
    q_rand = rng.random(B) < settings.p_rand
    q_a = u >= gamma
    q = q_rand | q_a
    arrays["q_a"][lo:hi], arrays["q"][lo:hi] = q_a, q
    arrays["r"][lo:hi] = np.where(q, np.where(c, 1, -1), 0)
    # §3.5 Every update_every steps: update the model on the training set, then k += 1.
    # The learning rate drops within the update when the epoch count reaches a milestone.
    if state.step > 0 and state.step % settings.update_every == 0:
        with timer("update"):
            epochs = update_model(run.model, run.optimizer, engine.gradients, images, labels,
                                  state.train_set(hi), settings.update_every, B,
                                  settings.dropout, rng, state.epochs_completed)
        for _ in milestones_reached(state.epochs_completed, epochs):  # the rate dropped
            state.lr_changed_at_steps.append(state.step)
        state.epochs_completed = epochs
        state.k += 1
    state.step += 1


def run_loop(settings: RunSettings, images: torch.Tensor, labels: torch.Tensor,
             device: torch.device, engine, observer: Observer | None = None):
    """Run one interactive run (or resume it, when the observer loads a checkpoint).
    Returns (state, model)."""
    observer = observer or Observer()
    run = start_run(settings, engine, device, len(images))
    observer.started(run)
    images, labels = images.to(device), labels.to(device)
    while run.state.step < settings.steps:
        interactive_step(run, images, labels, observer.timer)
        observer.step_done(run)
    observer.finished(run)
    return run.state, run.model
