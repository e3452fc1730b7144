"""The CUDA path without a GPU: every tensor a step creates or uses lies on the model's device.

PyTorch's ``meta`` device stands in for CUDA: tensors with a shape and dtype but no data, which
most kernels refuse to mix with CPU tensors. Not all do (a matrix product of a meta and a CPU
tensor passes), so a ``TorchDispatchMode`` (``DeviceLedger``) looks at every op a step runs
and records each whose tensors lie on more than one device. Allowed: the explicit moves
(``.to(device)``, the copy of a numpy array), and 0-dim CPU tensors, which CUDA kernels accept
as scalars. Host work on CPU tensors that are then moved (stream indices from numpy, the
permutations of torch's CPU generator, docs/spec.md §6.2) is what the loop means to do.

Both engines (algorithm.engine.PLAIN, fast.engine.FAST): the dropout masks, the query, the gradients, the
optimizer step, and whole interactive steps with model updates. A whole step ends in numpy
(``.cpu().numpy()`` of u and c), which a meta tensor cannot give: the ledger hands those
host copies random values of the right shape and dtype, so the step runs on.

Also here: a checkpoint written from a CUDA state loads on a machine without CUDA, and the
engine ``auto`` (the fast engine) is what run.json records.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.serialization
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from askdagger_mnist.algorithm.loop import interactive_step, start_run
from askdagger_mnist.algorithm.masks import WIDTHS, draw_masks
from askdagger_mnist.algorithm.model import LeNet, normalize_pixels
from askdagger_mnist.cli import train
from askdagger_mnist.data.checkpoint import is_checkpoint_of, load_checkpoint, save_checkpoint
from askdagger_mnist.fast.engine import FAST
from askdagger_mnist.algorithm.engine import PLAIN
from askdagger_mnist.settings import RunSettings
from conftest import MNIST_ROOT

pytestmark = pytest.mark.needs_mnist

META, CPU = torch.device("meta"), torch.device("cpu")
ENGINES = [PLAIN, FAST]
# Explicit moves between devices (and torch.from_numpy's lift): what may see two devices.
MOVES = {"aten._to_copy.default", "aten.to.dtype_layout", "aten.to.device", "aten.copy_.default",
         "aten.lift_fresh.default"}


class DeviceLedger(TorchDispatchMode):
    """Records every op (but a move) whose tensors lie on more than one device; gives the
    host copies of meta tensors random values."""

    def __init__(self):
        super().__init__()
        self.mixed: list[str] = []
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        source = args[0] if args else None
        if (name == "aten._to_copy.default" and isinstance(source, torch.Tensor)
                and source.is_meta and torch.device(kwargs.get("device") or META) == CPU):
            return _host_copy(source, kwargs.get("dtype") or source.dtype)
        out = func(*args, **kwargs)
        self.ops += 1
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        devices = {str(t.device) for t in tensors if not (t.dim() == 0 and t.device == CPU)}
        if name not in MOVES and len(devices) > 1:
            self.mixed.append(f"{name} on {sorted(devices)}")
        return out


def _host_copy(source: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """What ``.cpu()`` of a meta tensor would give: random values of its shape and dtype."""
    if dtype == torch.bool:
        return torch.rand(source.shape) < 0.5
    if dtype.is_floating_point:
        return torch.rand(source.shape, dtype=torch.float64).to(dtype)
    return torch.randint(0, 2, source.shape, dtype=dtype)


def _on(device: torch.device, *tensors) -> bool:
    return all(t.device == device for t in tensors)


def _images(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g))


def test_the_ledger_sees_a_cpu_tensor_that_meta_lets_through():
    with DeviceLedger() as ledger:
        torch.zeros(3, 4, device=META) @ torch.ones(4, 2)  # meta's kernel does not refuse this
        torch.zeros(3, device=META) * torch.tensor(2.0)  # a CPU scalar: CUDA accepts it too
        torch.from_numpy(np.arange(3)).to(META)  # an explicit move
    assert ledger.mixed == ["aten.mm.default on ['cpu', 'meta']"]


def test_masks_are_drawn_onto_the_device():
    with DeviceLedger() as ledger:
        masks = draw_masks(np.random.default_rng(0), 8, 4, 0.4, META)
    assert _on(META, *(getattr(masks, name) for name in WIDTHS)) and not ledger.mixed
    assert masks.conv1.shape == (8, 4, 6) and masks.fc2.shape == (8, 4, 84)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_query_gradients_and_optimizer_step_stay_on_the_device(engine):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = LeNet(0.4).to(META)
    images, labels = (t.to(META) for t in _images(16))
    with DeviceLedger() as ledger:
        optimizer = engine.make_optimizer(model)
        probs = engine.mc_probs(model, normalize_pixels(images[:8]),
                                draw_masks(rng, 8, 16, 0.4, META))
        for _ in range(2):  # the second step uses the momentum buffers of the first
            loss, grads = engine.gradients(model, normalize_pixels(images), labels,
                                           draw_masks(rng, 16, 1, 0.4, META))
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad
            optimizer.step()
    assert not ledger.mixed, ledger.mixed
    assert ledger.ops > 50
    assert probs.shape == (8, 10) and _on(META, probs, loss, *grads, *model.parameters())
    assert [g.shape for g in grads] == [p.shape for p in model.parameters()]
    buffers = (optimizer.buffers if engine is FAST else
               [optimizer.state[p]["momentum_buffer"] for p in model.parameters()])
    assert len(buffers) == 10 and _on(META, *buffers)


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_whole_steps_with_model_updates_stay_on_the_device(engine):
    """Five interactive steps (updates at steps 2 and 4) with the model and MNIST on meta."""
    settings = RunSettings(mode="sensitivity", s_des=0.9, p_rand=0.5, batch_size=16,
                           update_every=2, mc_samples=4, n_min=5, n_rep=2, steps=5)
    images, labels = _images()
    with DeviceLedger() as ledger:
        run = start_run(settings, engine, META, len(images))
        images, labels = images.to(META), labels.to(META)
        while run.state.step < settings.steps:
            interactive_step(run, images, labels)
    assert not ledger.mixed, ledger.mixed
    assert run.state.k == 2 and len(run.state.train_set(5 * 16)) > 0
    assert _on(META, *run.model.parameters())


def test_a_checkpoint_written_from_a_cuda_state_loads_on_a_machine_without_cuda(
        tmp_path, monkeypatch):
    """torch.save records each tensor's device as a location tag ("cuda:0" for a CUDA state);
    a plain torch.load of such a file fails without CUDA. Saving a CPU run with every tag
    made "cuda:0" writes the very file a CUDA run writes (model, momentum buffers, everything),
    and load_checkpoint (map_location="cpu") must restore it exactly."""
    if torch.cuda.is_available():
        pytest.skip("this simulates a machine without CUDA")
    settings = RunSettings(mode="success", s_des=0.8, batch_size=16, update_every=2,
                           mc_samples=4, n_min=5, n_rep=2, steps=6)
    images, labels = _images()
    run = start_run(settings, PLAIN, CPU, len(images))
    for _ in range(3):
        interactive_step(run, images, labels)
    path = tmp_path / "run.checkpoint.pt"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_checkpoint(path, run)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(path, weights_only=True)  # the file holds CUDA tensors
    resumed = start_run(settings, PLAIN, CPU, len(images))
    load_checkpoint(path, resumed)
    assert is_checkpoint_of(path, settings) and resumed.state.step == 3
    for a, b in zip(run.model.parameters(), resumed.model.parameters()):
        assert b.device == CPU and torch.equal(a, b)
    for p, q in zip(run.model.parameters(), resumed.model.parameters()):
        a = run.optimizer.state[p]["momentum_buffer"]
        b = resumed.optimizer.state[q]["momentum_buffer"]
        assert b.device == CPU and torch.equal(a, b)


def test_engine_auto_is_fast_on_the_cpu_and_run_json_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--mode", "success", "--s-des", "0.8", "--max-steps", "2", "--data-root",
            str(MNIST_ROOT), "--out", str(out), "--device", "auto", "--progress-every", "0"]
    if torch.cuda.is_available():
        pytest.skip("auto means CUDA here")
    assert train.main(argv) == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["engine"] == "fast" and info["gpu_placement"] is None
    assert info["device"].startswith("cpu")


def test_a_checkpoint_resumes_only_under_the_engine_auto_resolved_to(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--mode", "success", "--s-des", "0.8", "--max-steps", "4", "--data-root",
            str(MNIST_ROOT), "--out", str(out), "--device", "cpu", "--progress-every", "0",
            "--checkpoint-every", "2"]
    with pytest.raises(SystemExit):  # a crash after the checkpoint of step 2
        train.main([*argv, "--engine", "plain", "--halt-after", "2"])
    assert train.main([*argv, "--engine", "auto"]) == 1
    assert ("was written by the plain engine: resume it with --engine plain"
            in capsys.readouterr().err)
    assert train.main([*argv, "--engine", "plain"]) == 0
    assert json.loads((out / "run.json").read_text())["resumed_at_steps"] == [2]


def test_a_resumed_gpu_run_continues_its_own_gpus_generator_on_whichever_gpu_it_lands(monkeypatch):
    """A job may resume on another GPU than it started on (gpu_slots): the checkpoint keeps the
    state of the run's own GPU and restores it into the GPU it now uses. (CUDA simulated:
    torch.cuda's two generator functions replaced by a table of per-GPU states.)"""
    from askdagger_mnist.data.checkpoint import device_rng_state, restore_device_rng

    states = {0: torch.tensor([0], dtype=torch.uint8), 1: torch.tensor([11], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: states[device.index].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: states.__setitem__(device.index, state.clone()))
    saved = device_rng_state(torch.device("cuda", 1))  # the run drew on GPU 1
    states[1] = torch.tensor([99], dtype=torch.uint8)  # meanwhile, another job used GPU 1
    restore_device_rng(saved, torch.device("cuda", 0))  # resumed on GPU 0
    assert states[0].item() == 11 and states[1].item() == 99
    assert device_rng_state(torch.device("cpu")) is None
    restore_device_rng(None, torch.device("cuda", 0))  # written on the CPU: nothing to restore
    assert states[0].item() == 11


def test_highest_precision_is_float32_in_cudnn_convolutions_too():
    """matmul_precision highest means float32 throughout on every device: cuDNN's TF32
    convolutions, on by default in torch, are turned off; high and medium leave them on. (In a
    subprocess: the setting is global to torch.)"""
    import subprocess
    import sys

    code = ("import torch\n"
            "from askdagger_mnist.runner.devices import set_float32_precision\n"
            "for p in ('highest', 'medium', 'high', 'highest'):\n"
            "    set_float32_precision(p)\n"
            "    print(torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:4] == ["highest False", "medium True", "high True", "highest False"]
