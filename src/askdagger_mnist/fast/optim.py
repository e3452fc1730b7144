"""SGD with Nesterov momentum and weight decay, as torch.optim.SGD computes it: the fast twin
of ``algorithm.training.paper_optimizer`` (bound by tests/fast/test_fast_optim.py).

torch.optim's optimizers import torch._dynamo on construction (seconds per process, a large
share of a 15 s run); this is the same arithmetic, op for op (torch's update rule, done with
its multi-tensor ``_foreach`` kernels: ten parameters in five calls), so results are
bit-identical.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from ..algorithm.schedule import LEARNING_RATE
from ..algorithm.training import MOMENTUM, WEIGHT_DECAY


class NesterovSGD:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = LEARNING_RATE,
                 momentum: float = MOMENTUM, weight_decay: float = WEIGHT_DECAY):
        self.params = list(params)
        # The rate where torch.optim keeps it, so the schedule sets both engines' alike.
        self.param_groups = [{"lr": lr}]
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: Optional[list[torch.Tensor]] = None

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.param_groups[0]["lr"] = value

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, grads: Optional[Sequence[torch.Tensor]] = None) -> None:
        """One update from ``grads`` (one per parameter), or from the parameters' .grad."""
        if grads is None:
            grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise ValueError("every parameter needs a gradient")
        grads = torch._foreach_add(list(grads), self.params, alpha=self.weight_decay)
        if self.buffers is None:
            self.buffers = [g.detach().clone() for g in grads]
        else:
            torch._foreach_mul_(self.buffers, self.momentum)
            torch._foreach_add_(self.buffers, grads, alpha=1.0)
        torch._foreach_add_(grads, self.buffers, alpha=self.momentum)
        torch._foreach_add_(self.params, grads, alpha=-self.lr)

    def state_dict(self) -> dict:
        buffers = None if self.buffers is None else [b.detach().clone() for b in self.buffers]
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "buffers": buffers}

    def load_state_dict(self, state: dict) -> None:
        buffers = state["buffers"]
        if buffers is not None and len(buffers) != len(self.params):
            raise ValueError("optimizer state has a different number of parameters")
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.weight_decay = state["weight_decay"]
        self.buffers = None if buffers is None else [
            b.to(p.device).clone() for b, p in zip(buffers, self.params)]
