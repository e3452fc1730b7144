"""The novice: LeNet with Monte-Carlo dropout (docs/spec.md §1.2-§1.3 and §2).

Everything here is the plain reference: ``LeNet.forward`` is the network of §2.1 layer by
layer, ``mc_probs`` runs it on C masked copies of each image (the batched repeat that
torch-uncertainty uses), and the transforms are those of §1. The fast engine computes the
same functions in ``askdagger_mnist.fast.query`` and ``askdagger_mnist.fast.backprop``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .masks import DropoutMasks

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # §1.2
N_CLASSES = 10


class LeNet(nn.Module):
    """§2.1: conv1 -> ReLU -> Dropout2d -> max-pool, conv2 -> ReLU -> Dropout2d -> max-pool,
    fc1 -> ReLU -> Dropout, fc2 -> ReLU -> Dropout, fc3 (logits). 44,426 parameters."""

    def __init__(self, dropout: float = 0.4):
        super().__init__()
        self.p = dropout
        self.conv1 = nn.Conv2d(1, 6, 5)  # 28 -> 24, pooled to 12
        self.conv2 = nn.Conv2d(6, 16, 5)  # 12 -> 8, pooled to 4
        self.fc1 = nn.Linear(256, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, N_CLASSES)
        self.drop_conv = nn.Dropout2d(dropout)
        self.drop_fc = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, masks: Optional[DropoutMasks] = None) -> torch.Tensor:
        """One pass over x (N, 1, 28, 28): logits (N, 10).

        Without ``masks``, dropout is torch's (active in train mode). With ``masks`` (one keep
        mask per image and layer, from ``masks.draw_masks``), dropout applies exactly those:
        §2.3, the way both engines draw the same masks from the run's generator."""
        x = F.max_pool2d(self._dropout(F.relu(self.conv1(x)), masks, "conv1"), 2)
        x = F.max_pool2d(self._dropout(F.relu(self.conv2(x)), masks, "conv2"), 2)
        x = torch.flatten(x, 1)
        x = self._dropout(F.relu(self.fc1(x)), masks, "fc1")
        x = self._dropout(F.relu(self.fc2(x)), masks, "fc2")
        return self.fc3(x)

    def _dropout(self, h: torch.Tensor, masks: Optional[DropoutMasks], layer: str) -> torch.Tensor:
        if masks is None:
            return self.drop_conv(h) if h.dim() == 4 else self.drop_fc(h)
        keep = masks.scaled(layer).reshape(h.shape[0], -1)  # (N, channels or features)
        if h.dim() == 4:  # Dropout2d: one factor per channel
            keep = keep[:, :, None, None]
        return h * keep


def normalize_pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """§1.2 query-time input: (pixels / 255 - mean) / std, shape (B, 1, 28, 28)."""
    x = images_uint8.to(torch.float32).div_(255.0)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)


def train_transform(
    images_uint8: torch.Tensor, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """§1.3 training input: pad 4 zeros around pixels / 255, random 28x28 crop, normalise.
    The offsets, two integers in 0..8 per image (top, left), come from ``generator``."""
    n = images_uint8.shape[0]
    offsets = torch.randint(0, 9, (2, n), device=images_uint8.device, generator=generator)
    return crop_and_normalize(images_uint8, offsets)


def crop_and_normalize(images_uint8: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """§1.3 with given offsets (2, n): image i padded by 4 zeros, cut at row ``offsets[0, i]``
    and column ``offsets[1, i]`` of the 36 x 36 padded image, then normalised (§1.2). The
    lock-step proof (bench/lockstep.py) feeds it the original's recorded offsets."""
    n = images_uint8.shape[0]
    padded = F.pad(images_uint8, (4, 4, 4, 4))  # (n, 36, 36), uint8
    windows = padded.unfold(1, 28, 1).unfold(2, 28, 1)  # (n, 9, 9, 28, 28): every crop, a view
    crops = windows[torch.arange(n, device=images_uint8.device), offsets[0], offsets[1]]
    return normalize_pixels(crops)


@torch.inference_mode()
def mc_probs(model: LeNet, x: torch.Tensor, masks: DropoutMasks) -> torch.Tensor:
    """§2.2: mean softmax over the C passes given by ``masks``: (B, 10). Each image is repeated
    C times and the copies go through ``LeNet.forward``, copy m of image b with mask (b, m)."""
    B, C = masks.conv1.shape[:2]
    copies = x.repeat_interleave(C, dim=0)  # (B * C, 1, 28, 28): image b, pass m at row b*C + m
    probs = torch.softmax(model(copies, masks), dim=-1)
    return probs.view(B, C, N_CLASSES).mean(dim=1)


def uncertainty_from_probs(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """§2.2: u = 1 - max mean prob (NaN -> 1) and the prediction argmax."""
    top, pred = probs.max(dim=-1)
    u = 1.0 - top
    return torch.nan_to_num(u, nan=1.0), pred


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
