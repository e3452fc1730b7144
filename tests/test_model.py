"""LeNet and the Monte-Carlo-dropout uncertainty (spec section 2)."""

import torch
import torch.nn.functional as F

from askdagger_mnist.model import (
    LeNet, draw_masks, max_pool2, mc_probs, mc_probs_reference, mc_uncertainty,
    n_parameters, normalize_pixels, train_transform, uncertainty_from_probs,
)
from askdagger_mnist.data import load_mnist_train
from conftest import MNIST_ROOT

CPU = torch.device("cpu")


def test_parameter_count_and_output_shape():
    model = LeNet()
    assert n_parameters(model) == 44_426
    model.eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_fast_mc_equals_plain_forward_passes_with_the_same_masks():
    torch.manual_seed(0)
    model = LeNet()
    images, _ = load_mnist_train(MNIST_ROOT)
    x = normalize_pixels(images[:64])
    masks = draw_masks(16, 64, 0.4, CPU)
    fast, plain = mc_probs(model, x, masks), mc_probs_reference(model, x, masks)
    assert torch.allclose(fast, plain, atol=1e-6)
    assert torch.allclose(fast.sum(-1), torch.ones(64), atol=1e-5)


def test_reference_pass_is_the_module_forward_with_dropout_off():
    """With all-ones masks (p = 0) both MC paths equal softmax of the module's eval forward."""
    torch.manual_seed(1)
    model = LeNet().eval()
    x = torch.randn(8, 1, 28, 28)
    ones = draw_masks(3, 8, 0.0, CPU)
    expected = torch.softmax(model(x), -1)
    assert torch.allclose(mc_probs(model, x, ones), expected, atol=1e-6)
    assert torch.allclose(mc_probs_reference(model, x, ones), expected, atol=1e-6)


def test_dropout_is_active_at_query_time():
    torch.manual_seed(2)
    model = LeNet()
    x = torch.randn(32, 1, 28, 28)
    u1, _ = mc_uncertainty(model, x, 16, 0.4)
    u2, _ = mc_uncertainty(model, x, 16, 0.4)
    assert not torch.equal(u1, u2)  # fresh masks every call
    masks = draw_masks(16, 32, 0.4, CPU)
    kept = masks.fc1 > 0
    assert 0.5 < kept.float().mean() < 0.7  # keep probability 0.6
    assert torch.allclose(masks.fc1[kept], torch.tensor(1 / 0.6))
    per_pass = [mc_probs(model, x, draw_masks(1, 32, 0.4, CPU)) for _ in range(2)]
    assert not torch.allclose(per_pass[0], per_pass[1])


def test_uncertainty_in_unit_interval_and_nan_becomes_one():
    torch.manual_seed(3)
    u, pred = mc_uncertainty(LeNet(), torch.randn(50, 1, 28, 28) * 5, 16, 0.4)
    assert torch.all((u >= 0) & (u <= 1)) and pred.shape == (50,)
    probs = torch.tensor([[0.2, 0.8], [float("nan"), float("nan")]])
    u, _ = uncertainty_from_probs(probs)
    assert torch.allclose(u, torch.tensor([0.2, 1.0]))


def test_max_pool2_matches_torch():
    x = torch.randn(7, 3, 8, 12)
    assert torch.equal(max_pool2(x), F.max_pool2d(x, 2))


def test_train_transform_pads_crops_and_normalizes():
    images = torch.full((200, 28, 28), 255, dtype=torch.uint8)
    x = train_transform(images)
    assert x.shape == (200, 1, 28, 28)
    pad = (0 - 0.1307) / 0.3081
    full = (1 - 0.1307) / 0.3081
    assert torch.all(torch.isclose(x, torch.tensor(pad)) | torch.isclose(x, torch.tensor(full)))
    padded_rows = torch.isclose(x[:, 0, :, 0], torch.tensor(pad)).sum(1)
    assert padded_rows.max() == 28 and padded_rows.min() == 0  # offsets vary in 0..8
    assert (x == pad).reshape(200, -1).sum(1).max() <= 4 * 28 * 2 + 4 * 28 * 2


def test_conv1_gradient_equals_torch_s():
    from askdagger_mnist.model import _Conv2dBatchCorrelationGrad

    torch.manual_seed(4)
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_Conv2dBatchCorrelationGrad.apply, (x, w, b))
    g = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    ours = torch.autograd.grad(_Conv2dBatchCorrelationGrad.apply(x, w, b), (x, w, b), g)
    ref = torch.autograd.grad(F.conv2d(x, w, b), (x, w, b), g)
    for a, r in zip(ours, ref):
        assert torch.allclose(a, r, rtol=1e-12, atol=1e-12)
