"""The learning-rate schedule of docs/spec.md §3.5: the authors' MultiStepLR (milestones at 25
and 50 completed epochs, factor 0.1), stepped after every training epoch an update completes;
its counter in the run state, in checkpoints (also format 3, which lacks it) and in run.json."""

from __future__ import annotations

import subprocess
import sys


import numpy as np
import pytest
import torch

from askdagger_mnist.algorithm import schedule
from askdagger_mnist.algorithm.loop import interactive_step, run_loop, start_run
from askdagger_mnist.algorithm.model import LeNet
from askdagger_mnist.algorithm.schedule import (
    LEARNING_RATE, LR_FACTOR, LR_MILESTONES, epoch_ends, learning_rate,
)
from askdagger_mnist.algorithm.training import (
    autograd_gradients, minibatches, paper_optimizer, set_learning_rate, update_model,
)
from askdagger_mnist.data.mnist import load_mnist_train
from askdagger_mnist.data.rundir import read_info
from askdagger_mnist.fast.engine import FAST
from askdagger_mnist.fast.backprop import written_out_gradients
from askdagger_mnist.fast.optim import NesterovSGD
from askdagger_mnist.settings import RESULTS_VERSION, RunSettings
from conftest import assert_same_run, MNIST_ROOT

pytestmark = pytest.mark.needs_mnist

CPU = torch.device("cpu")
# Few queries (no random ones, specificity 0.9): a training set of one mini-batch, 5 epochs per
# update, so the count reaches 25 with the update of step 25 and the rate drops there.
CROSSING = RunSettings(mode="specificity", s_des=0.9, p_rand=0.0, steps=31)


def test_learning_rate_is_multisteplr_epoch_by_epoch():
    assert (LEARNING_RATE, LR_MILESTONES, LR_FACTOR) == (0.1, (25, 50), 0.1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LEARNING_RATE)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(LR_MILESTONES), LR_FACTOR)
    for epochs in range(80):
        assert learning_rate(epochs) == opt.param_groups[0]["lr"], epochs  # bit for bit
        opt.step()
        sched.step()
    rates = [learning_rate(e) for e in (0, 24, 25, 49, 50, 51)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rel=1e-12)


@pytest.mark.parametrize("n,batch_size,n_steps,ends", [
    (1, 128, 5, [1, 2, 3, 4, 5]), (128, 128, 5, [1, 2, 3, 4, 5]),  # nb = 1: 5 epochs
    (129, 128, 5, [2, 4]), (256, 128, 5, [2, 4]),  # nb = 2: 2 epochs
    (257, 128, 5, [3]), (512, 128, 5, [4]), (640, 128, 5, [5]),  # nb = 3, 4, 5: 1 epoch
    (641, 128, 5, []), (5000, 128, 5, []), (0, 128, 5, []),  # nb = 6 or more: a cut pass
    (64, 64, 5, [1, 2, 3, 4, 5]), (65, 64, 5, [2, 4]), (300, 100, 5, [3]), (301, 100, 5, [4]),
    (50, 10, 5, [5]), (51, 10, 5, []), (300, 128, 10, [3, 6, 9]), (100, 128, 1, [1]),
    (200, 128, 1, []),
])
def test_epoch_ends_by_hand(n, batch_size, n_steps, ends):
    assert epoch_ends(n, n_steps, batch_size) == ends


@pytest.mark.parametrize("batch_size", [128, 32])
def test_epoch_ends_are_where_minibatches_finish_a_pass(batch_size):
    torch.manual_seed(0)
    for n in range(1, 7 * batch_size, 7):
        ends = epoch_ends(n, 5, batch_size)
        nb = -(-n // batch_size)
        assert len(ends) == (5 // nb if nb <= 5 else 0), n
        batches = minibatches(np.arange(n, dtype=np.int64), 5, batch_size)
        sizes = np.cumsum([len(b) for b in batches])
        assert [j for j in range(1, 6) if sizes[j - 1] % n == 0] == ends, n


def epochs_before_step(q: np.ndarray, step: int, batch_size: int, update_every: int) -> int:
    """The oracle of the loop's counter, §3.5: the completed-epoch count when ``step`` is next, from the queries ``q`` of the
    stream alone (the training set at the update of step s holds the queried samples among
    the first (s + 1) x batch_size): what the run counts as it goes."""
    n_queried = np.cumsum(np.asarray(q) != 0)
    return sum(len(epoch_ends(int(n_queried[(s + 1) * batch_size - 1]), update_every, batch_size))
               for s in range(update_every, step, update_every))


def test_counter_from_the_stream_reads_5_7_8_like_the_authors_run():
    B = 128
    q = np.zeros(16 * B, np.int8)
    q[:100] = 1  # update of step 5: 100 queried, one mini-batch a pass -> 5 epochs
    q[6 * B : 6 * B + 100] = 1  # step 10: 200, two a pass -> 2 epochs
    q[11 * B : 11 * B + 100] = 1  # step 15: 300, three a pass -> 1 epoch
    assert [epochs_before_step(q, s, B, 5) for s in (5, 6, 11, 16)] == [0, 5, 7, 8]


class RecordingOptimizer:
    """Records the rate each SGD step is taken at (kept in param_groups, as torch.optim's)."""

    def __init__(self, model):
        self.param_groups, self.seen = [{"lr": LEARNING_RATE}], []

    def step(self):
        self.seen.append(self.param_groups[0]["lr"])


def recording_sgd(model):
    """torch's SGD of the plain engine, recording the rate of each step."""
    opt = paper_optimizer(model)
    opt.seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: o.seen.append(o.param_groups[0]["lr"]))
    return opt


def _update(make_optimizer, n_train, epochs, gradients=autograd_gradients):
    """One update of 5 steps on ``n_train`` random images, the count at ``epochs`` before it."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (800, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (800,), generator=g)
    torch.manual_seed(1)
    model = LeNet(0.4)
    optimizer = make_optimizer(model)
    set_learning_rate(optimizer, learning_rate(epochs))
    after = update_model(model, optimizer, gradients, images, labels,
                         np.arange(n_train, dtype=np.int64), 5, 128, 0.4,
                         np.random.default_rng(2), epochs)
    return model, optimizer, after


@pytest.mark.parametrize("n_train,before,counts,after", [
    (200, 24, [24, 24, 25, 25, 25], 26),  # nb = 2: the epoch ending at step 2 reaches 25
    (100, 49, [49, 50, 51, 52, 53], 54),  # nb = 1: the epoch ending at step 1 reaches 50
    (100, 20, [20, 21, 22, 23, 24], 25),  # 25 after the last step: the next update's rate
    (700, 24, [24, 24, 24, 24, 24], 24),  # nb = 6: no epoch completes
])
def test_the_rate_drops_between_the_steps_of_an_update(n_train, before, counts, after):
    """Lightning's order: the step that completes an epoch runs at the old rate, then the
    scheduler steps; ``counts`` is the epoch count whose rate each of the 5 steps uses."""
    for make_optimizer in (RecordingOptimizer, recording_sgd):
        _, opt, got = _update(make_optimizer, n_train, before)
        assert opt.seen == [learning_rate(c) for c in counts] and got == after
    assert opt.param_groups[0]["lr"] == learning_rate(after)


def test_both_optimizers_follow_the_same_rates_bit_for_bit(monkeypatch):
    """Across a drop within the update (nb = 2 at 24 epochs), torch's SGD and NesterovSGD give
    the same parameters bit for bit, and within float32 rounding with the fast gradients."""
    plain, _, _ = _update(paper_optimizer, 200, 24)
    fast_opt, opt, _ = _update(lambda m: NesterovSGD(m.parameters()), 200, 24)
    assert opt.lr == learning_rate(26)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), fast_opt.parameters()))
    fast, _, _ = _update(lambda m: NesterovSGD(m.parameters()), 200, 24, written_out_gradients)
    for a, b in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(schedule, "LR_MILESTONES", ())  # the same update at a constant rate
    constant, _, _ = _update(paper_optimizer, 200, 24)
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), constant.parameters()))


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_train(MNIST_ROOT)


def _run(settings, images, labels):
    run = start_run(settings, FAST, CPU, len(images))
    while run.state.step < settings.steps:
        interactive_step(run, images, labels)
    return run


def test_a_run_with_few_queries_lowers_its_rate(mnist, monkeypatch):
    torch.set_num_threads(1)
    run = _run(CROSSING, *mnist)
    state = run.state
    assert (state.epochs_completed, state.lr_changed_at_steps) == (30, [25])
    assert run.optimizer.lr == learning_rate(30)
    assert epochs_before_step(state.arrays["q"], 31, 128, 5) == 30  # the count from the stream
    monkeypatch.setattr(schedule, "LR_MILESTONES", ())  # the same run at a constant rate
    constant = _run(CROSSING, *mnist)
    for name, array in state.arrays.items():  # the same up to the update of step 30 ...
        np.testing.assert_array_equal(array, constant.state.arrays[name], err_msg=name)
    assert not all(torch.equal(a, b)  # ... which ran at 0.01
                   for a, b in zip(run.model.parameters(), constant.model.parameters()))


def test_a_paper_default_run_keeps_its_rate_and_is_unchanged(mnist, monkeypatch):
    torch.set_num_threads(1)
    settings = RunSettings(steps=26)
    state, model = run_loop(settings, *mnist, CPU, FAST)
    assert state.lr_changed_at_steps == [] and state.epochs_completed < 25
    monkeypatch.setattr(schedule, "LR_MILESTONES", ())
    constant, constant_model = run_loop(settings, *mnist, CPU, FAST)
    for name, array in state.arrays.items():
        np.testing.assert_array_equal(array, constant.arrays[name], err_msg=name)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), constant_model.parameters()))


def _train_cli(out, *extra):
    s = CROSSING
    return subprocess.run(
        [sys.executable, "-m", "askdagger_mnist.cli.train", "--mode", s.mode, "--s-des",
         str(s.s_des), "--p-rand", str(s.p_rand), "--max-steps", str(s.steps), "--data-root",
         str(MNIST_ROOT), "--out", str(out), "--device", "cpu", "--threads", "1",
         "--progress-every", "0", "--engine", "fast", *extra], capture_output=True, text=True)


@pytest.mark.slow
def test_resume_across_the_drop_is_bit_identical_and_another_results_version_is_refused(tmp_path):
    ref = tmp_path / "ref"
    assert _train_cli(ref, "--checkpoint-every", "0").returncode == 0
    assert read_info(ref)["lr_schedule"] == {
        "milestones_epochs": [25, 50], "factor": 0.1, "epochs_completed": 30,
        "lr_changed_at_steps": [25], "final_lr": learning_rate(30)}
    # A checkpoint after the drop (step 30): the update of step 30 runs at 0.01.
    out = tmp_path / "after_drop"
    assert _train_cli(out, "--checkpoint-every", "30", "--halt-after", "30").returncode == 3
    done = _train_cli(out, "--checkpoint-every", "30")
    assert done.returncode == 0, done.stderr
    assert_same_run(ref, out, ("lr_schedule",))
    # A checkpoint written by code whose results differ: refused, naming it, and kept.
    out = tmp_path / "older"
    ckpt = tmp_path / "older.checkpoint.pt"
    assert _train_cli(out, "--checkpoint-every", "20", "--halt-after", "20").returncode == 3
    payload = torch.load(ckpt, weights_only=True)
    torch.save({**payload, "results_version": RESULTS_VERSION - 1}, ckpt)
    refused = _train_cli(out, "--checkpoint-every", "20")
    assert refused.returncode == 1 and not out.exists() and ckpt.is_file()
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: checkpoint {ckpt} was written by another version of askdagger-mnist (format "
        f"{payload['version']}, results version {RESULTS_VERSION - 1}; this one writes "
        f"{payload['version']}, {RESULTS_VERSION}): delete it to start the run from step 0.")
