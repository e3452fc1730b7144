"""``fast.optim.NesterovSGD`` is ``algorithm.training.paper_optimizer`` (torch.optim.SGD with
Nesterov momentum) bit for bit, also across a state round trip."""

import torch
import torch.nn.functional as F

from askdagger_mnist.algorithm.model import LeNet
from askdagger_mnist.algorithm.training import paper_optimizer
from askdagger_mnist.fast.optim import NesterovSGD


def _train(model, opt, batches):
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_matches_torch_sgd_bit_for_bit():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))) for _ in range(6)]
    torch.manual_seed(1)
    ours = LeNet().eval()  # eval: no dropout, so both see the same forward passes
    torch.manual_seed(1)
    ref = LeNet().eval()
    _train(ours, NesterovSGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4), batches)
    _train(ref, paper_optimizer(ref), batches)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name


def test_state_round_trip_continues_identically():
    torch.manual_seed(0)
    batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))) for _ in range(4)]
    torch.manual_seed(2)
    a = LeNet().eval()
    b = LeNet().eval()
    b.load_state_dict(a.state_dict())
    opt_a = NesterovSGD(a.parameters(), 0.1, 0.9, 5e-4)
    _train(a, opt_a, batches[:2])
    b.load_state_dict(a.state_dict())
    opt_b = NesterovSGD(b.parameters(), 0.1, 0.9, 5e-4)
    opt_b.load_state_dict(opt_a.state_dict())
    _train(a, opt_a, batches[2:])
    _train(b, opt_b, batches[2:])
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
