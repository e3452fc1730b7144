"""The model update of docs/spec.md §3.5: mini-batches from shuffled passes, the optimizer."""

import numpy as np
import torch

from askdagger_mnist.algorithm.model import LeNet
from askdagger_mnist.algorithm.training import minibatches, paper_optimizer
from askdagger_mnist.fast.optim import NesterovSGD


def test_minibatches_take_fresh_shuffled_passes_with_a_short_last_batch():
    torch.manual_seed(0)
    train_set = np.arange(100, 400, dtype=np.int64)  # 300 samples: passes of 128, 128, 44
    batches = minibatches(train_set, 5, 128)
    assert [len(b) for b in batches] == [128, 128, 44, 128, 128]
    first_pass = torch.cat(batches[:3]).sort().values
    assert torch.equal(first_pass, torch.from_numpy(train_set))  # each sample once per pass
    assert not torch.equal(torch.cat(batches[:3]), torch.from_numpy(train_set))  # shuffled
    assert len(set(torch.cat(batches[3:]).tolist())) == 256  # the second pass, no repeats


def test_small_training_set_is_passed_over_several_times():
    torch.manual_seed(1)
    batches = minibatches(np.arange(50, dtype=np.int64), 5, 128)
    assert [len(b) for b in batches] == [50] * 5


def test_paper_optimizer_is_nesterov_sgd_with_weight_decay():
    opt = paper_optimizer(LeNet())
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD) and group["nesterov"]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.1, 0.9, 5e-4)
    fast = NesterovSGD(LeNet().parameters())
    assert (fast.lr, fast.momentum, fast.weight_decay) == (0.1, 0.9, 5e-4)
