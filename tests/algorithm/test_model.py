"""LeNet with Monte-Carlo dropout, plain (docs/spec.md §2): the network, its masked forward
pass, the query-time probabilities and the uncertainty."""

import numpy as np
import torch
import torch.nn.functional as F

from askdagger_mnist.algorithm.masks import draw_masks
from askdagger_mnist.algorithm.model import (
    LeNet, mc_probs, n_parameters, normalize_pixels, train_transform, uncertainty_from_probs,
)

CPU = torch.device("cpu")


def test_parameter_count_and_output_shape():
    model = LeNet()
    assert n_parameters(model) == 44_426
    model.eval()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_masked_forward_is_the_network_of_the_spec_with_those_masks():
    """§2.1 written by hand: ReLU, then the channel (or feature) mask scaled by 1 / (1 - p),
    then the pool."""
    torch.manual_seed(0)
    model = LeNet()
    x = torch.randn(6, 1, 28, 28)
    masks = draw_masks(np.random.default_rng(0), 6, 1, 0.4, CPU)
    h = F.max_pool2d(F.relu(model.conv1(x)) * masks.scaled("conv1").view(6, 6, 1, 1), 2)
    h = F.max_pool2d(F.relu(model.conv2(h)) * masks.scaled("conv2").view(6, 16, 1, 1), 2)
    h = F.relu(model.fc1(torch.flatten(h, 1))) * masks.scaled("fc1").view(6, 120)
    h = F.relu(model.fc2(h)) * masks.scaled("fc2").view(6, 84)
    assert torch.allclose(model(x, masks), model.fc3(h), atol=1e-6)
    assert not torch.allclose(model(x, masks), model.eval()(x))  # the masks did something


def test_mc_probs_averages_one_pass_per_mask():
    torch.manual_seed(1)
    model = LeNet()
    x = torch.randn(5, 1, 28, 28)
    masks = draw_masks(np.random.default_rng(1), 5, 4, 0.4, CPU)
    passes = []
    for m in range(4):
        one = masks.rows(0, 5)
        one = type(masks)(*(getattr(one, n)[:, m : m + 1] for n in ("conv1", "conv2", "fc1", "fc2")),
                          masks.scale)
        passes.append(torch.softmax(model(x, one), -1))
    assert torch.allclose(mc_probs(model, x, masks), torch.stack(passes).mean(0), atol=1e-6)


def test_dropout_is_active_at_query_time_and_masks_are_fresh_per_call():
    torch.manual_seed(2)
    model = LeNet()
    x = torch.randn(32, 1, 28, 28)
    rng = np.random.default_rng(2)
    masks = draw_masks(rng, 32, 16, 0.4, CPU)
    kept = masks.fc1 > 0
    assert 0.5 < kept.float().mean() < 0.7  # keep probability 0.6
    assert torch.allclose(masks.scaled("fc1")[kept], torch.tensor(1 / 0.6))
    per_call = [mc_probs(model, x, draw_masks(rng, 32, 16, 0.4, CPU)) for _ in range(2)]
    assert not torch.allclose(per_call[0], per_call[1])


def test_uncertainty_in_unit_interval_and_nan_becomes_one():
    torch.manual_seed(3)
    probs = mc_probs(LeNet(), torch.randn(50, 1, 28, 28) * 5,
                     draw_masks(np.random.default_rng(3), 50, 16, 0.4, CPU))
    u, pred = uncertainty_from_probs(probs)
    assert torch.all((u >= 0) & (u <= 1)) and pred.shape == (50,)
    probs = torch.tensor([[0.2, 0.8], [float("nan"), float("nan")]])
    u, _ = uncertainty_from_probs(probs)
    assert torch.allclose(u, torch.tensor([0.2, 1.0]))


def test_inputs_are_normalised_and_training_crops_are_padded_shifts():
    images = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8)
    x = normalize_pixels(images)
    assert x.shape == (20, 1, 28, 28)
    assert torch.allclose(x[3, 0], (images[3].float() / 255 - 0.1307) / 0.3081)
    crops = train_transform(images, torch.Generator().manual_seed(0))
    pad = (0 - 0.1307) / 0.3081
    padded = F.pad((images.float() / 255 - 0.1307) / 0.3081, (4, 4, 4, 4), value=pad)
    for i in range(20):  # every crop is one of the 9 x 9 windows of the padded image
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if torch.allclose(crops[i, 0], padded[i, dy : dy + 28, dx : dx + 28], atol=1e-6)]
        assert hits, i


def test_masks_keep_with_probability_one_minus_p_and_scale_what_they_keep():
    masks = draw_masks(np.random.default_rng(4), 1000, 16, 0.4, CPU)
    for name, width in (("conv1", 6), ("conv2", 16), ("fc1", 120), ("fc2", 84)):
        m = getattr(masks, name)
        assert m.shape == (1000, 16, width) and m.dtype == torch.float32
        assert set(m.unique().tolist()) == {0.0, 1.0}
        assert abs(m.mean().item() - 0.6) < 5 * np.sqrt(0.24 / m.numel()), name
    assert masks.scale == 1 / 0.6
    assert torch.equal(masks.rows(10, 20).fc1, masks.fc1[10:20])
    everything = draw_masks(np.random.default_rng(4), 10, 2, 0.0, CPU)
    assert all(bool(getattr(everything, n).all()) for n in ("conv1", "conv2", "fc1", "fc2"))
