"""Query-time MC-dropout probabilities with the work shared between passes: the fast twin of
``algorithm.model.mc_probs`` (the same function of the same masks; bound by
tests/fast/test_fast_query.py).

* conv1 -> max-pool -> ReLU is computed once per image: Dropout2d multiplies each channel by a
  non-negative scale, which commutes with ReLU and max-pool, so the first mask is applied after
  pooling;
* conv2 is linear in its input channels, so the per-input-channel convolutions are computed
  once (a grouped convolution) and each pass only mixes them with its channel mask;
* the second Dropout2d again commutes with ReLU and max-pool;
* every max-pool is a maximum of four contiguous blocks (``fast.polyphase``).
Only the fully connected layers run once per pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..algorithm.masks import DropoutMasks
from ..algorithm.model import N_CLASSES, LeNet
from .polyphase import KERNEL, conv1_windows, max4, window_blocks


@torch.inference_mode()
def mc_probs_shared(model: LeNet, x: torch.Tensor, masks: DropoutMasks) -> torch.Tensor:
    """Mean softmax over the C passes given by ``masks``: (B, 10)."""
    B, C = masks.conv1.shape[:2]
    s = masks.scale
    # conv1 -> max-pool -> ReLU, shared by all passes.
    h1 = max4(conv1_windows(model.conv1, x)[1]).clamp_min_(0).view(B, 6, 12, 12)
    # conv2 split by input channel (it is linear in its input channels), regrouped by window
    # position: parts[b, i, w] = contribution of input channel i at window position w.
    w2 = model.conv2.weight.transpose(0, 1).reshape(6 * 16, 1, KERNEL, KERNEL)
    parts = window_blocks(F.conv2d(h1, w2, groups=6).view(B * 6, 16, 8, 8)).view(B, 6, 4, 256)
    # Each pass mixes the channels with its first mask (scaled), then max-pools: a running
    # maximum over the window positions. The bias, equal at all four, is added after pooling.
    mix = masks.conv1 * s  # (B, C, 6)
    h2 = torch.bmm(mix, parts[:, :, 0])
    for w in (1, 2, 3):
        torch.maximum(h2, torch.bmm(mix, parts[:, :, w]), out=h2)
    h2 = h2.view(B, C, 16, 16).add_(model.conv2.bias.view(16, 1)).clamp_min_(0)
    h = h2.mul_(masks.conv2.unsqueeze(-1)).view(B * C, 256)
    # Fully connected layers, one row per (image, pass); each dropout scale is folded into the
    # next layer's weight.
    h = torch.addmm(model.fc1.bias, h, model.fc1.weight.t() * s).clamp_min_(0)
    h = h.mul_(masks.fc1.view(B * C, 120))
    h = torch.addmm(model.fc2.bias, h, model.fc2.weight.t() * s).clamp_min_(0)
    h = h.mul_(masks.fc2.view(B * C, 84))
    logits = torch.addmm(model.fc3.bias, h, model.fc3.weight.t() * s).view(B, C, N_CLASSES)
    return torch.softmax(logits, dim=-1).mean(dim=1)
