"""The shared-work query pass (``fast.query``) against C plain forward passes
(``algorithm.model.mc_probs``) with the same masks, docs/spec.md §2.2."""

import numpy as np
import pytest
import torch

from askdagger_mnist.algorithm.masks import draw_masks
from askdagger_mnist.algorithm.model import LeNet, mc_probs, normalize_pixels
from askdagger_mnist.data.mnist import load_mnist_train
from askdagger_mnist.fast.query import mc_probs_shared
from conftest import MNIST_ROOT

pytestmark = pytest.mark.needs_mnist

CPU = torch.device("cpu")


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_query_equals_plain_forward_passes_with_the_same_masks(seed):
    images, _ = load_mnist_train(MNIST_ROOT)
    torch.manual_seed(seed)
    model = LeNet()
    with torch.no_grad():  # larger weights than at initialisation: more active units
        for p in model.parameters():
            p.mul_(3)
    x = normalize_pixels(images[:64])
    masks = draw_masks(np.random.default_rng(seed), 64, 16, 0.4, CPU)
    fast, plain = mc_probs_shared(model, x, masks), mc_probs(model, x, masks)
    assert torch.allclose(fast, plain, atol=1e-6)
    assert torch.allclose(fast.sum(-1), torch.ones(64), atol=1e-5)
    assert not torch.allclose(plain, plain.mean(0))  # not a degenerate, input-free output


def test_without_dropout_both_equal_the_eval_forward():
    torch.manual_seed(1)
    model = LeNet().eval()
    x = torch.randn(8, 1, 28, 28)
    ones = draw_masks(np.random.default_rng(0), 8, 3, 0.0, CPU)
    expected = torch.softmax(model(x), -1)
    assert torch.allclose(mc_probs_shared(model, x, ones), expected, atol=1e-6)
    assert torch.allclose(mc_probs(model, x, ones), expected, atol=1e-6)
