"""Dropout keep masks, drawn exactly and cheaply from a numpy Generator.

``bernoulli_keep(rng, n, keep)`` draws n independent Bernoulli(keep) values using, on average,
a little over 8 random bits each (torch's dropout uses a 32-bit uniform per value): a draw is
the comparison of a uniform number U = 0.B1 B2 B3 ... (random base-256 digits, one byte each)
with ``keep``, digit by digit. The first byte settles it unless it equals keep's first digit
(probability 1/256); only those undecided draws read another byte, and so on. ``keep`` is a
float64 whose base-256 expansion is finite, so P(U < keep) is exactly ``keep``, not a 24-bit
rounding of it as with ``torch.rand() < keep``. The same distribution as torch's Dropout and
Dropout2d (keep with probability 1 - p, scale by 1 / (1 - p)), several times cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

WIDTHS = {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84}  # channels / features per layer


@lru_cache(maxsize=None)
def base256_digits(keep: float) -> tuple[int, ...]:
    """The base-256 digits of ``keep`` in [0, 1] (a 1.0 gives the single digit 256)."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep probability must be in [0, 1], got {keep}")
    digits, x = [], float(keep)
    while x > 0.0:
        x *= 256.0  # exact: a power of two
        d = int(x)
        digits.append(d)
        x -= d  # exact
    return tuple(digits)


def random_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform random bytes: the raw 64-bit outputs of the generator, 8 bytes each
    (several times faster than ``rng.bytes``)."""
    return rng.bit_generator.random_raw((n + 7) // 8).view(np.uint8)[:n]


def bernoulli_keep(rng: np.random.Generator, n: int, keep: float, dtype=bool) -> np.ndarray:
    """n independent draws of Bernoulli(keep) (see the module docstring), as 0/1 of ``dtype``
    (written directly: a float32 mask needs no conversion pass)."""
    digits = base256_digits(keep)
    if not digits:
        return np.zeros(n, dtype=dtype)
    byte = random_bytes(rng, n)
    out = np.empty(n, dtype=dtype)
    np.less(byte, digits[0], out=out, casting="unsafe")  # a digit of 256 (keep = 1): all kept
    pending = np.flatnonzero(byte == digits[0])
    for digit in digits[1:]:
        if pending.size == 0:
            break
        byte = random_bytes(rng, pending.size)
        out[pending[byte < digit]] = 1
        pending = pending[byte == digit]
    return out  # still pending: U equals keep on every digit so far, so U >= keep: dropped


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
    """Float32 keep masks of the four dropout layers for ``n_passes`` passes of a batch (one
    draw for all four layers, then split: fewer, larger calls)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    rows = batch * n_passes
    draws = bernoulli_keep(rng, rows * sum(WIDTHS.values()), 1.0 - p, dtype=np.float32)
    flat = torch.from_numpy(draws).to(device)
    masks, start = {}, 0
    for name, width in WIDTHS.items():
        masks[name] = flat[start : start + rows * width].view(batch, n_passes, width)
        start += rows * width
    return DropoutMasks(**masks, scale=1.0 / (1.0 - p))
