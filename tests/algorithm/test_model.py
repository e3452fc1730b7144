"""LeNet and the Monte-Carlo-dropout uncertainty (spec section 2)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from askdagger_mnist.backprop import loss_and_grads, max4_backward, max4_forward
from askdagger_mnist.masks import base256_digits, bernoulli_keep, draw_masks, random_bytes
from askdagger_mnist.model import (
    LeNet, mc_probs, mc_probs_reference, mc_uncertainty, n_parameters, normalize_pixels,
    train_transform, uncertainty_from_probs,
)
from askdagger_mnist.data import load_mnist_train
from conftest import MNIST_ROOT

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_train(MNIST_ROOT)


def test_parameter_count_and_output_shape():
    model = LeNet()
    assert n_parameters(model) == 44_426
    model.eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_mc_equals_plain_forward_passes_with_the_same_masks(mnist, seed):
    torch.manual_seed(seed)
    model = LeNet()
    with torch.no_grad():  # larger weights than at initialisation: more active units
        for p in model.parameters():
            p.mul_(3)
    x = normalize_pixels(mnist[0][:64])
    masks = draw_masks(np.random.default_rng(seed), 64, 16, 0.4, CPU)
    fast, plain = mc_probs(model, x, masks), mc_probs_reference(model, x, masks)
    assert torch.allclose(fast, plain, atol=1e-6)
    assert torch.allclose(fast.sum(-1), torch.ones(64), atol=1e-5)
    assert not torch.allclose(plain, plain.mean(0))  # not a degenerate, input-free output


def test_reference_pass_is_the_module_forward_with_dropout_off():
    """With all-ones masks (p = 0) both MC paths equal softmax of the module's eval forward."""
    torch.manual_seed(1)
    model = LeNet().eval()
    x = torch.randn(8, 1, 28, 28)
    ones = draw_masks(np.random.default_rng(0), 8, 3, 0.0, CPU)
    expected = torch.softmax(model(x), -1)
    assert torch.allclose(mc_probs(model, x, ones), expected, atol=1e-6)
    assert torch.allclose(mc_probs_reference(model, x, ones), expected, atol=1e-6)


def test_dropout_is_active_at_query_time():
    torch.manual_seed(2)
    model = LeNet()
    x = torch.randn(32, 1, 28, 28)
    rng = np.random.default_rng(2)
    u1, _ = mc_uncertainty(model, x, 16, 0.4, rng)
    u2, _ = mc_uncertainty(model, x, 16, 0.4, rng)
    assert not torch.equal(u1, u2)  # fresh masks every call
    masks = draw_masks(rng, 32, 16, 0.4, CPU)
    kept = masks.fc1 > 0
    assert 0.5 < kept.float().mean() < 0.7  # keep probability 0.6
    assert torch.allclose(masks.scaled("fc1")[kept], torch.tensor(1 / 0.6))
    per_pass = [mc_probs(model, x, draw_masks(rng, 32, 1, 0.4, CPU)) for _ in range(2)]
    assert not torch.allclose(per_pass[0], per_pass[1])


def test_uncertainty_in_unit_interval_and_nan_becomes_one():
    torch.manual_seed(3)
    u, pred = mc_uncertainty(LeNet(), torch.randn(50, 1, 28, 28) * 5, 16, 0.4,
                             np.random.default_rng(3))
    assert torch.all((u >= 0) & (u <= 1)) and pred.shape == (50,)
    probs = torch.tensor([[0.2, 0.8], [float("nan"), float("nan")]])
    u, _ = uncertainty_from_probs(probs)
    assert torch.allclose(u, torch.tensor([0.2, 1.0]))


def test_bernoulli_keep_digits_and_frequencies():
    assert base256_digits(0.5) == (128,)
    assert base256_digits(1.0) == (256,) and base256_digits(0.0) == ()
    assert base256_digits(0.6)[:6] == (153,) * 6  # 0.6 = 0.999..._16: 153 = 0x99 repeating
    rng = np.random.default_rng(7)
    assert bernoulli_keep(rng, 1000, 1.0).all() and not bernoulli_keep(rng, 1000, 0.0).any()
    n = 2_000_000
    for keep in (0.6, 0.5, 0.1, 0.9, 153 / 256, 0.6 + 1e-9):
        share = bernoulli_keep(rng, n, keep).mean()
        assert abs(share - keep) < 5 * np.sqrt(keep * (1 - keep) / n), (keep, share)


def test_bernoulli_keep_resolves_ties_on_later_bytes():
    """keep = 153.5 / 256: a first byte of 153 (1/256 of draws) is settled by the second byte
    (< 128: kept), so exactly half of them are kept."""
    rng = np.random.default_rng(8)
    n = 4_000_000
    first = random_bytes(np.random.default_rng(8), n)
    kept = bernoulli_keep(rng, n, 153.5 / 256)
    assert np.array_equal(kept[first != 153], first[first != 153] < 153)
    tied = kept[first == 153]
    assert 0.4 < tied.mean() < 0.6 and len(tied) > 10_000


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


def _forward_plain(model, x, masks):
    """forward() with dropout as torch applies it (ReLU, mask, then pool), given masks."""
    h = F.max_pool2d(F.relu(model.conv1(x)) * masks.scaled("conv1").view(-1, 6, 1, 1), 2)
    h = F.max_pool2d(F.relu(model.conv2(h)) * masks.scaled("conv2").view(-1, 16, 1, 1), 2)
    h = F.relu(model.fc1(torch.flatten(h, 1))) * masks.scaled("fc1").view(-1, 120)
    h = F.relu(model.fc2(h)) * masks.scaled("fc2").view(-1, 84)
    return model.fc3(h)


@pytest.mark.parametrize("seed", [6, 7])
def test_written_out_gradients_equal_autograd_of_the_plain_network(mnist, seed):
    images, labels = mnist
    torch.manual_seed(seed)
    model = LeNet()
    x, y = train_transform(images[:128]), labels[:128]  # padded crops: many tied maxima
    masks = draw_masks(np.random.default_rng(seed), 128, 1, 0.4, CPU)
    loss, grads = loss_and_grads(model, x, y, masks)
    ref_loss = F.cross_entropy(_forward_plain(model, x, masks), y)
    ref_grads = torch.autograd.grad(ref_loss, list(model.parameters()))
    assert torch.allclose(loss, ref_loss, rtol=1e-6)
    for g, ref, p in zip(grads, ref_grads, model.parameters()):
        assert g.shape == p.shape
        assert torch.allclose(g, ref, rtol=1e-4, atol=1e-6 * ref.abs().max())
    ones = draw_masks(np.random.default_rng(0), 128, 1, 0.0, CPU)
    eval_loss = F.cross_entropy(model.eval()(x), y)
    assert torch.allclose(loss_and_grads(model, x, y, ones)[0], eval_loss, rtol=1e-6)
