"""2x2 max-pooling as the maximum of four contiguous blocks (used by ``fast.query`` and
``fast.backprop``; plain twin: ``F.max_pool2d`` in ``algorithm.model.LeNet.forward``; bound
through tests/fast/test_fast_query.py and tests/fast/test_fast_backprop.py, the latter also
checking the gradient's choice among tied maxima against ``F.max_pool2d``'s).

A 5x5 convolution followed by a 2x2 max-pool computes, for each pooled position Y and each
of the four window positions w = (wy, wx), conv(input)[2Y + w]. Split the input into its 2x2
phases (every other row and column): each window position is then a plain stride-1
convolution of the phase images with a 3x3 kernel made of the 5x5 weights (zeros where no
weight falls). Stacking the window positions as output channels puts the four values of every
pooling window in four contiguous blocks, so the max-pool is three element-wise maxima
(torch's CPU max-pool kernels cost more than the convolutions of this small network).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

KERNEL = 5


def _tap_offsets() -> np.ndarray:
    """d[w, r, e] = kernel row (0..4) that input phase r (of 2) at tap e (of 3) contributes to
    window position w (of 2); -1 where none: conv row 2Y + w reads input row 2(Y + e) + r."""
    w, r, e = np.meshgrid(np.arange(2), np.arange(2), np.arange(3), indexing="ij")
    d = 2 * e + r - w
    return np.where((d >= 0) & (d < KERNEL), d, -1)


def split_phases(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 2H, 2W) -> (B, 4, H, W): the 2x2 phases (row phase, column phase)."""
    B, _, H2, W2 = x.shape
    return x.reshape(B, H2 // 2, 2, W2 // 2, 2).permute(0, 2, 4, 1, 3).reshape(B, 4, H2 // 2, W2 // 2)


@lru_cache(maxsize=None)
def conv1_2phase_index(device: torch.device) -> torch.Tensor:
    """Gather index into [conv1.weight.flatten(), 0] for the polyphase conv1
    weight (24, 4, 3, 3): out channel (wy, wx, o), in channel (ry, rx) = 2x2 input phases;
    the output (B, 24, 12, 12) holds the four window positions of the pooled map in order."""
    d = _tap_offsets()
    wy, wx, o, ry, rx, ey, ex = np.meshgrid(
        *(np.arange(n) for n in (2, 2, 6, 2, 2, 3, 3)), indexing="ij")
    dy, dx = d[wy, ry, ey], d[wx, rx, ex]
    idx = np.where((dy >= 0) & (dx >= 0), o * 25 + dy * 5 + dx, 6 * 25)
    return torch.from_numpy(idx.reshape(-1)).to(device)


def gather_weight(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """weight.flatten() appended with a zero, gathered by a polyphase index."""
    flat = torch.cat([weight.reshape(-1), weight.new_zeros(1)])
    return flat[index]


def conv1_windows(conv1: torch.nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1 of x (B, 1, 28, 28) in the polyphase layout: (the input phases (B, 4, 14, 14),
    the output (B, 4, 6 * 144)), whose four blocks are the window positions (0,0), (0,1),
    (1,0), (1,1) of the 12x12 pooled map; the max over them is the max-pool."""
    B = x.shape[0]
    phases = split_phases(x)
    w1 = gather_weight(conv1.weight, conv1_2phase_index(x.device)).view(24, 4, 3, 3)
    z1 = F.conv2d(phases, w1, conv1.bias.repeat(4))
    return phases, z1.view(B, 4, 6 * 144)


def window_blocks(z: torch.Tensor) -> torch.Tensor:
    """(B, C, 2H, 2W) -> (B, 4, C * H * W): the four positions of each 2x2 pooling window as
    four blocks, each in (C, H, W) order (a copy)."""
    B, C, H2, W2 = z.shape
    return (z.view(B, C, H2 // 2, 2, W2 // 2, 2).permute(0, 3, 5, 1, 2, 4)
            .reshape(B, 4, C * (H2 // 2) * (W2 // 2)))


def max4(z: torch.Tensor) -> torch.Tensor:
    """Element-wise max over dim 1 of size 4 (the four positions of each pooling window)."""
    return torch.maximum(torch.maximum(z[:, 0], z[:, 1]), torch.maximum(z[:, 2], z[:, 3]))
