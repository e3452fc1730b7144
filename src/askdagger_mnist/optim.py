"""SGD with Nesterov momentum and weight decay, as torch.optim.SGD computes it.

torch.optim's optimizers import torch._dynamo on construction (seconds per process, a large
share of a 15 s run); this is the same arithmetic, op for op (torch's single-tensor path, the
one it takes on CPU), so results are bit-identical (tests/test_optim.py).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch


class NesterovSGD:
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
                 weight_decay: float):
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffers: list[Optional[torch.Tensor]] = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = p.grad.add(p, alpha=self.weight_decay)
            buf = self.buffers[i]
            if buf is None:
                buf = self.buffers[i] = torch.clone(grad).detach()
            else:
                buf.mul_(self.momentum).add_(grad, alpha=1.0)
            p.add_(grad.add(buf, alpha=self.momentum), alpha=-self.lr)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "buffers": [None if b is None else b.detach().clone() for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["buffers"]) != len(self.params):
            raise ValueError("optimizer state has a different number of parameters")
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.weight_decay = state["weight_decay"]
        self.buffers = [None if b is None else b.to(p.device).clone()
                        for b, p in zip(state["buffers"], self.params)]
