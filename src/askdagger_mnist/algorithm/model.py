"""LeNet with Monte-Carlo dropout (spec section 2) and its fast query-time uncertainty.

Query time keeps all three dropout layers active and passes every image through C independent
dropout masks. ``mc_probs`` computes exactly the same function as C plain forward passes
(``mc_probs_reference``) but shares the work that the masks do not change:

* conv1 -> max-pool -> ReLU is computed once per image: Dropout2d multiplies each channel by a
  non-negative scale, which commutes with ReLU and max-pool, so the first mask is applied after
  pooling;
* conv2 is linear in its input channels, so the per-input-channel convolutions are computed
  once (a grouped convolution) and each pass only mixes them with its channel mask;
* the second Dropout2d again commutes with ReLU and max-pool;
* every max-pool is a maximum of four contiguous blocks, one per window position: conv1 runs
  in a polyphase layout (below), and conv2's per-input-channel outputs are regrouped by
  window position once, so that each pass's mixing and pooling run on contiguous memory
  (torch's max-pool kernels are several times slower on CPU for these small maps).
Only the fully connected layers run once per pass. The masks come from ``masks.py`` (the
distributions of torch's Dropout2d/Dropout: keep with 1 - p, scale by 1 / (1 - p)).

Training computes the loss and gradients of one masked pass in ``backprop.py``, with the
polyphase conv1 of this module.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .masks import DropoutMasks, draw_masks

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
N_CLASSES = 10
KERNEL = 5


class LeNet(nn.Module):
    def __init__(self, dropout: float = 0.4):
        super().__init__()
        self.p = dropout
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(256, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, N_CLASSES)
        self.drop_conv = nn.Dropout2d(dropout)
        self.drop_fc = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One pass (dropout active in train mode): logits (B, 10)."""
        x = F.max_pool2d(self.drop_conv(F.relu(self.conv1(x))), 2)
        x = F.max_pool2d(self.drop_conv(F.relu(self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        x = self.drop_fc(F.relu(self.fc1(x)))
        x = self.drop_fc(F.relu(self.fc2(x)))
        return self.fc3(x)


def normalize_pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """Query-time input: (pixels / 255 - mean) / std, shape (B, 1, 28, 28)."""
    x = images_uint8.to(torch.float32).div_(255.0)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)


# --------------------------------------------------------------------------- pooling windows
#
# Polyphase layout. A 5x5 convolution followed by a 2x2 max-pool computes, for each pooled
# position Y and each of the four window positions w = (wy, wx), conv(input)[2Y + w]. Split the
# input into its 2x2 phases (every other row and column): each window position is then a
# plain stride-1 convolution of the phase images with a 3x3 kernel made of the 5x5 weights
# (zeros where no weight falls). Stacking the window positions as output channels puts the four
# values of every pooling window in four contiguous blocks, so the max-pool is three
# element-wise maxima.


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


def conv1_windows(model: "LeNet", x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1 of x (B, 1, 28, 28) in the polyphase layout: (the input phases (B, 4, 14, 14),
    the output (B, 4, 6 * 144)), whose four blocks are the window positions (0,0), (0,1),
    (1,0), (1,1) of the 12x12 pooled map; the max over them is the max-pool."""
    B = x.shape[0]
    phases = split_phases(x)
    w1 = gather_weight(model.conv1.weight, conv1_2phase_index(x.device)).view(24, 4, 3, 3)
    z1 = F.conv2d(phases, w1, model.conv1.bias.repeat(4))
    return phases, z1.view(B, 4, 6 * 144)


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


def window_blocks(z: torch.Tensor) -> torch.Tensor:
    """(B, C, 2H, 2W) -> (B, 4, C * H * W): the four positions of each 2x2 pooling window as
    four blocks, each in (C, H, W) order (a copy)."""
    B, C, H2, W2 = z.shape
    return (z.view(B, C, H2 // 2, 2, W2 // 2, 2).permute(0, 3, 5, 1, 2, 4)
            .reshape(B, 4, C * (H2 // 2) * (W2 // 2)))


def gather_weight(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """weight.flatten() appended with a zero, gathered by a polyphase index."""
    flat = torch.cat([weight.reshape(-1), weight.new_zeros(1)])
    return flat[index]


def _max4(z: torch.Tensor) -> torch.Tensor:
    """Element-wise max over dim 1 of size 4 (the four positions of each pooling window)."""
    return torch.maximum(torch.maximum(z[:, 0], z[:, 1]), torch.maximum(z[:, 2], z[:, 3]))


@torch.inference_mode()
def mc_probs(model: LeNet, x: torch.Tensor, masks: DropoutMasks) -> torch.Tensor:
    """Mean softmax over the C passes given by ``masks``: (B, 10). Fast, exact."""
    B, C = masks.conv1.shape[:2]
    s = masks.scale
    # conv1 -> max-pool -> ReLU, shared by all passes.
    h1 = _max4(conv1_windows(model, x)[1]).clamp_min_(0).view(B, 6, 12, 12)
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


@torch.inference_mode()
def mc_probs_reference(model: LeNet, x: torch.Tensor, masks: DropoutMasks) -> torch.Tensor:
    """The same function written as C plain forward passes (for tests)."""
    C = masks.conv1.shape[1]
    probs = []
    for m in range(C):
        h = F.relu(model.conv1(x)) * masks.scaled("conv1")[:, m, :, None, None]
        h = F.max_pool2d(h, 2)
        h = F.relu(model.conv2(h)) * masks.scaled("conv2")[:, m, :, None, None]
        h = torch.flatten(F.max_pool2d(h, 2), 1)
        h = F.relu(model.fc1(h)) * masks.scaled("fc1")[:, m]
        h = F.relu(model.fc2(h)) * masks.scaled("fc2")[:, m]
        probs.append(torch.softmax(model.fc3(h), dim=-1))
    return torch.stack(probs).mean(dim=0)


def uncertainty_from_probs(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u = 1 - max mean prob (NaN -> 1) and the prediction argmax."""
    top, pred = probs.max(dim=-1)
    u = 1.0 - top
    return torch.nan_to_num(u, nan=1.0), pred


def mc_uncertainty(
    model: LeNet, x: torch.Tensor, n_passes: int, p: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query-time MC-dropout uncertainty and prediction for a batch of normalised images."""
    masks = draw_masks(rng, x.shape[0], n_passes, p, x.device)
    return uncertainty_from_probs(mc_probs(model, x, masks))


def train_transform(
    images_uint8: torch.Tensor, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Training input: pad 4 zeros around pixels / 255, random 28x28 crop, normalise."""
    n = images_uint8.shape[0]
    device = images_uint8.device
    padded = F.pad(images_uint8, (4, 4, 4, 4))  # (n, 36, 36), uint8
    windows = padded.unfold(1, 28, 1).unfold(2, 28, 1)  # (n, 9, 9, 28, 28): every crop, a view
    off = torch.randint(0, 9, (2, n), device=device, generator=generator)
    crops = windows[torch.arange(n, device=device), off[0], off[1]]  # (n, 28, 28)
    return normalize_pixels(crops)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
