"""The written-out training gradients (``fast.backprop``) against autograd on the plain
network (``algorithm.training.autograd_gradients``), docs/spec.md §3.5."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from askdagger_mnist.algorithm.masks import draw_masks
from askdagger_mnist.algorithm.model import LeNet, train_transform
from askdagger_mnist.algorithm.training import autograd_gradients
from askdagger_mnist.data.mnist import load_mnist_train
from askdagger_mnist.fast.backprop import max4_backward, max4_forward, written_out_gradients
from conftest import MNIST_ROOT

pytestmark = pytest.mark.needs_mnist

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_train(MNIST_ROOT)


def test_max_of_4_gradient_goes_to_the_first_maximum_as_max_pool2d():
    torch.manual_seed(5)
    # Rounded values: many exact ties, as MNIST's constant background gives.
    z = torch.relu(torch.round(torch.randn(16, 6, 12, 12) * 2)).requires_grad_()
    g = torch.randn(16, 6, 6, 6)
    ref_out = F.max_pool2d(z, 2)
    (ref_grad,) = torch.autograd.grad(ref_out, z, g)
    blocks = z.detach().view(16, 6, 6, 2, 6, 2).permute(0, 3, 5, 1, 2, 4).reshape(16, 4, 216)
    out, sel = max4_forward(blocks)
    grad = max4_backward(g.reshape(16, 216), sel)  # (16, 4, 216), back to (16, 6, 12, 12):
    grad = grad.view(16, 2, 2, 6, 6, 6).permute(0, 3, 4, 1, 5, 2).reshape(16, 6, 12, 12)
    assert torch.equal(out.view(16, 6, 6, 6), ref_out)
    assert torch.equal(grad, ref_grad)


@pytest.mark.parametrize("seed", [6, 7])
def test_written_out_gradients_equal_autograd_of_the_plain_network(mnist, seed):
    images, labels = mnist
    torch.manual_seed(seed)
    model = LeNet()
    x, y = train_transform(images[:128]), labels[:128]  # padded crops: many tied maxima
    masks = draw_masks(np.random.default_rng(seed), 128, 1, 0.4, CPU)
    loss, grads = written_out_gradients(model, x, y, masks)
    ref_loss, ref_grads = autograd_gradients(model, x, y, masks)
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    for g, ref, p in zip(grads, ref_grads, model.parameters()):
        assert g.shape == p.shape
        assert torch.allclose(g, ref, rtol=1e-4, atol=1e-6 * ref.abs().max())
    ones = draw_masks(np.random.default_rng(0), 128, 1, 0.0, CPU)
    eval_loss = F.cross_entropy(model.eval()(x), y)
    assert torch.allclose(written_out_gradients(model, x, y, ones)[0], eval_loss, rtol=1e-6)
