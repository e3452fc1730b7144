"""The model update (docs/spec.md §3.5): SGD steps on mini-batches of the training set.

``update_model`` is the same for both engines; the engine supplies how the gradients are
computed (here ``autograd_gradients``; fast twin ``fast.backprop.written_out_gradients``) and
which optimizer takes the step (here ``paper_optimizer``, torch's
SGD; fast twin ``fast.optim.NesterovSGD``). The learning rate follows the authors' MultiStepLR,
stepped once per completed training epoch (``learning_rate``, ``epoch_ends``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .masks import DropoutMasks, draw_masks
from .schedule import LEARNING_RATE, epoch_ends, learning_rate
from .model import LeNet, train_transform

# §3.5: one SGD optimizer for the whole run; its rate follows the schedule of schedule.py
# (the authors' MultiStepLR over completed training epochs).
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4

Gradients = Callable[[LeNet, torch.Tensor, torch.Tensor, DropoutMasks],
                     tuple[torch.Tensor, list[torch.Tensor]]]


def paper_optimizer(model: LeNet) -> torch.optim.Optimizer:
    """§3.5: SGD, lr 0.1, Nesterov momentum 0.9, weight decay 5e-4 on every parameter."""
    return torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                           nesterov=True, weight_decay=WEIGHT_DECAY)


def set_learning_rate(optimizer, lr: float) -> None:
    """Set the rate of the optimizer's every parameter group (torch.optim's, and
    ``fast.optim.NesterovSGD``'s, which keeps its rate the same way)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def autograd_gradients(model: LeNet, x: torch.Tensor, y: torch.Tensor,
                       masks: DropoutMasks) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean cross-entropy of one dropout pass with ``masks`` over the batch, and its gradient
    (one tensor per parameter, in ``model.parameters()`` order), by torch.autograd."""
    with torch.enable_grad():
        loss = F.cross_entropy(model(x, masks), y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss.detach(), list(grads)


def minibatches(train_set: np.ndarray, n_steps: int, batch_size: int) -> list[torch.Tensor]:
    """The training-set indices of ``n_steps`` mini-batches: a fresh shuffled pass over
    ``train_set`` (torch's generator), and a new shuffled pass whenever one runs out; the last
    batch of a pass may be smaller."""
    pool = torch.from_numpy(train_set)
    batches, perm, pos = [], torch.randperm(len(pool)), 0
    for _ in range(n_steps):
        if pos >= len(perm):  # the pass ran out: a new shuffled pass
            perm, pos = torch.randperm(len(pool)), 0
        batches.append(pool[perm[pos : pos + batch_size]])
        pos += batch_size
    return batches


def update_model(model: LeNet, optimizer, gradients: Gradients, images: torch.Tensor,
                 labels: torch.Tensor, train_set: np.ndarray, n_steps: int, batch_size: int,
                 dropout: float, rng: np.random.Generator, epochs_completed: int) -> int:
    """§3.5: ``n_steps`` SGD steps. The mini-batches, their training crops (§1.3) and their
    dropout masks (§2.3) are drawn first, for all steps of the update, then the steps run.
    Returns the completed-epoch count after the update (``epochs_completed`` before it)."""
    batches = minibatches(train_set, n_steps, batch_size)
    chosen = torch.cat(batches).to(images.device)
    x_all, y_all = train_transform(images[chosen]), labels[chosen]
    masks_all = draw_masks(rng, len(chosen), 1, dropout, x_all.device)
    ends = epoch_ends(len(train_set), n_steps, batch_size)
    start = 0
    for j, batch in enumerate(batches, start=1):
        stop = start + len(batch)
        _, grads = gradients(model, x_all[start:stop], y_all[start:stop],
                             masks_all.rows(start, stop))
        for param, grad in zip(model.parameters(), grads):
            param.grad = grad
        optimizer.step()
        if j in ends:  # the step that ends an epoch ran at the old rate; the scheduler steps
            epochs_completed += 1
            set_learning_rate(optimizer, learning_rate(epochs_completed))
        start = stop
    return epochs_completed
