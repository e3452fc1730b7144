"""One training step's loss and gradients, forward and backward written out (no autograd):
the fast twin of ``algorithm.training.autograd_gradients`` (bound by
tests/fast/test_fast_backprop.py).

The function is LeNet's (docs/spec.md §2.1, §3.5) with dropout active: cross-entropy,
averaged over the batch, of the logits of one pass with the given masks. Written out because on a CPU thread the graph bookkeeping of autograd and separate ReLU, dropout and
pooling kernels cost as much as the arithmetic of this small network:

* ReLU and dropout fold into one gate per layer, (a > 0) * mask, used forward and backward;
* ReLU and the channel masks act after max-pooling (they commute with it: same values, same
  gradients, a quarter of the elements);
* conv1 runs in the polyphase layout of ``fast.polyphase``, and conv2's output is regrouped into
  the four window positions: each max-pool is a maximum of four contiguous blocks, the
  gradient going to the first maximum as F.max_pool2d's does (several times cheaper on CPU
  than F.max_pool2d's kernels).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..algorithm.masks import DropoutMasks
from ..algorithm.model import LeNet
from .polyphase import conv1_2phase_index, conv1_windows, window_blocks


def max4_forward(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over dim 1 (size 4) of (B, 4, N) and what the backward pass needs: (3, B, N) of
    1.0 where a later candidate is strictly larger (pairs (0, 1), (2, 3), then the winners).
    Contiguous float operations only: torch's max(dim) / where / bool kernels are slow here."""
    a, b, c, d = z.unbind(1)
    top, bottom = torch.maximum(a, b), torch.maximum(c, d)
    sel = z.new_empty(3, *a.shape)
    torch.gt(b, a, out=sel[0])
    torch.gt(d, c, out=sel[1])
    torch.gt(bottom, top, out=sel[2])
    return torch.maximum(top, bottom), sel


def max4_backward(grad: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Gradient of ``max4_forward`` to its input (B, 4, N): all of it to the first maximum."""
    out = grad.new_empty(grad.shape[0], 4, *grad.shape[1:])
    max4_backward_into(grad, sel, out.unbind(1))
    return out


def max4_backward_into(grad: torch.Tensor, sel: torch.Tensor, dest) -> None:
    """``max4_backward`` written into four given tensors (views allowed), one per block."""
    g_bottom = grad * sel[2]
    g_top = grad - g_bottom
    torch.mul(g_top, sel[0], out=dest[1])
    torch.sub(g_top, dest[1], out=dest[0])
    torch.mul(g_bottom, sel[1], out=dest[3])
    torch.sub(g_bottom, dest[3], out=dest[2])


@lru_cache(maxsize=None)
def conv1_fold_matrix(device: torch.device) -> torch.Tensor:
    """(150, 864) 0/1 matrix summing the polyphase conv1 weight's entries back onto the 5x5
    weight they were gathered from (the transpose of the gather)."""
    index = conv1_2phase_index(torch.device("cpu"))
    fold = torch.zeros(6 * 25 + 1, len(index))
    fold[index, torch.arange(len(index))] = 1.0
    return fold[:-1].to(device)


def _gate(pre: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(pre > 0) * mask: ReLU and dropout as one factor (mask broadcast over pre)."""
    return torch.gt(pre, 0, out=torch.empty_like(pre)).mul_(mask)


@torch.no_grad()
def written_out_gradients(model: LeNet, x: torch.Tensor, y: torch.Tensor,
                          masks: DropoutMasks) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean cross-entropy of one masked pass over x (B, 1, 28, 28) and its gradient, one
    tensor per parameter in ``model.parameters()`` order."""
    B = x.shape[0]
    # conv1 in the 2x2 polyphase layout -> max-pool -> ReLU and mask.
    phases, z1 = conv1_windows(model.conv1, x)
    pool1, sel1 = max4_forward(z1)
    gate1 = _gate(pool1.view(B, 6, 144), masks.scaled("conv1").view(B, 6, 1))
    h1 = (pool1.view(B, 6, 144) * gate1).view(B, 6, 12, 12)
    # conv2 -> max-pool -> ReLU and mask.
    z2 = F.conv2d(h1, model.conv2.weight, model.conv2.bias)
    pool2, sel2 = max4_forward(window_blocks(z2))  # (B, 256) in (channel, row, col) order
    gate2 = _gate(pool2.view(B, 16, 16), masks.scaled("conv2").view(B, 16, 1))
    h2 = (pool2.view(B, 16, 16) * gate2).view(B, 256)
    # Fully connected layers.
    a3 = torch.addmm(model.fc1.bias, h2, model.fc1.weight.t())
    gate3 = _gate(a3, masks.scaled("fc1").view(B, 120))
    h3 = a3 * gate3
    a4 = torch.addmm(model.fc2.bias, h3, model.fc2.weight.t())
    gate4 = _gate(a4, masks.scaled("fc2").view(B, 84))
    h4 = a4 * gate4
    logits = torch.addmm(model.fc3.bias, h4, model.fc3.weight.t())
    log_probs = torch.log_softmax(logits, dim=1)
    rows = torch.arange(B, device=x.device)
    loss = -log_probs[rows, y].mean()

    # Backward.
    d_logits = log_probs.exp_()
    d_logits[rows, y] -= 1.0
    d_logits /= B
    g_fc3_w, g_fc3_b = d_logits.t() @ h4, d_logits.sum(0)
    d4 = (d_logits @ model.fc3.weight).mul_(gate4)
    g_fc2_w, g_fc2_b = d4.t() @ h3, d4.sum(0)
    d3 = (d4 @ model.fc2.weight).mul_(gate3)
    g_fc1_w, g_fc1_b = d3.t() @ h2, d3.sum(0)
    d_pool2 = (d3 @ model.fc1.weight).view(B, 16, 16).mul_(gate2).view(B, 16, 4, 4)
    d_z2 = torch.empty_like(z2)
    windows = d_z2.view(B, 16, 4, 2, 4, 2)  # the four window positions, as strided views:
    max4_backward_into(d_pool2, sel2.view(3, B, 16, 4, 4),
                       [windows[:, :, :, dy, :, dx] for dy in (0, 1) for dx in (0, 1)])
    d_h1, g_conv2_w, g_conv2_b = torch.ops.aten.convolution_backward(
        d_z2, h1, model.conv2.weight, [16], [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
        [True, True, True])
    d_pool1 = d_h1.view(B, 6, 144).mul_(gate1)
    g_conv1_b = d_pool1.sum((0, 2))  # each pooled gradient goes to exactly one window position
    d_z1 = max4_backward(d_pool1.view(B, 6 * 144), sel1).view(B, 24, 12, 12)
    # conv1's weight gradient as one correlation over the batch (conv2d of x^T with grad^T),
    # then summed back from the polyphase weight onto the 5x5 one.
    g_w1 = F.conv2d(phases.transpose(0, 1), d_z1.transpose(0, 1)).transpose(0, 1)
    g_conv1_w = (conv1_fold_matrix(x.device) @ g_w1.reshape(-1)).view_as(model.conv1.weight)
    grads = [g_conv1_w, g_conv1_b, g_conv2_w, g_conv2_b, g_fc1_w, g_fc1_b,
             g_fc2_w, g_fc2_b, g_fc3_w, g_fc3_b]
    return loss, grads
