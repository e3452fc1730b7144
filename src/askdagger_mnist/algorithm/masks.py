"""Dropout keep masks, drawn from the run's numpy Generator (docs/spec.md §2.3).

Torch's Dropout2d keeps each channel, and Dropout each feature, with probability 1 - p and
scales what it keeps by 1 / (1 - p). Here the keep decisions are drawn up front from the run's
numpy Generator, so that both engines apply the very same masks (docs/spec.md §7.3) and a
checkpoint holds one generator state. Each decision is one uniform double, kept when it is
below 1 - p. (A byte-wise drawer, about one random byte per decision, was measured and saved
nothing of a full run: docs/architecture.md.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

WIDTHS = {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84}  # channels / features per layer


@dataclass
class DropoutMasks:
    """Keep masks (0. or 1.) of the four dropout layers for ``n_passes`` passes of a batch,
    each (batch, n_passes, width), and the scale 1 / (1 - p) that kept values get."""

    conv1: torch.Tensor
    conv2: torch.Tensor
    fc1: torch.Tensor
    fc2: torch.Tensor
    scale: float

    def scaled(self, name: str) -> torch.Tensor:
        """The mask as dropout applies it: 0 or 1 / (1 - p)."""
        return getattr(self, name) * self.scale

    def rows(self, start: int, stop: int) -> "DropoutMasks":
        """The masks of batch rows start..stop-1."""
        return DropoutMasks(*(getattr(self, name)[start:stop] for name in WIDTHS), self.scale)


def draw_masks(rng: np.random.Generator, batch: int, n_passes: int, p: float,
               device: torch.device) -> DropoutMasks:
    """Keep masks of the four dropout layers for ``n_passes`` passes of ``batch`` images: each
    decision is a Bernoulli(1 - p) draw, ``U < 1 - p`` with U a uniform double. One draw for
    all four layers, stored layer after layer (conv1, conv2, fc1, fc2), each in (image, pass,
    unit) order."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    rows = batch * n_passes
    keep = rng.random(rows * sum(WIDTHS.values())) < 1.0 - p
    flat = torch.from_numpy(keep.astype(np.float32)).to(device)
    masks, start = {}, 0
    for name, width in WIDTHS.items():
        masks[name] = flat[start : start + rows * width].view(batch, n_passes, width)
        start += rows * width
    return DropoutMasks(**masks, scale=1.0 / (1.0 - p))
