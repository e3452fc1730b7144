"""Record what the authors' original train() consumes and produces, from inside a running
original, for the lock-step proof (bench/lockstep.py replays it through our plain engine).

    ORIG=~/.cache/askdagger-mnist/original-venv/bin/python
    $ORIG bench/original/record_lockstep.py --source PATH/TO/askdagger_mnist \\
        --mnist-raw PATH/TO/MNIST/raw --work WORKDIR --out RECORD_DIR \\
        [--mode sensitivity --s-des 0.9 --rep 0 --updates 20]

Their code is not edited: this script wraps, in its own process only, the functions and
methods their train() calls, records what passes through them, and stops the run once the
requested number of model updates has happened (plus the SAG call after it, whose rewards give
the last step's queries). Recorded (every file a plain ``.npz``, no pickle):

* ``query_{t}.npz`` for each step t: the stream positions drawn (``sample_idx``), the batch as
  their transform made it (``x``), the weights at the query (``w_*``), the keep masks of the 16
  dropout passes (``m_conv1``, ``m_conv2``, ``m_fc1``, ``m_fc2``; rows in their (pass, image)
  order), the logits, the uncertainty ``u`` and the prediction;
* ``sag_{t}.npz``: the u, r, k SAG received and the gamma it returned;
* ``update_{j}.npz`` for each update j: the training set (``train_subset``);
* ``sgd_{j}_{s}.npz`` for SGD step s of update j: the mini-batch's MNIST indices (``batch_idx``),
  each sample's crop offsets (``crop``: top, left), the inputs and targets the loss saw, the
  keep masks of the pass, the learning rate, the weights and momentum buffers before the step
  and the weights after it.

Dropout masks are read off torch's dropout modules with forward hooks: a unit whose input is
0 everywhere (after ReLU) has no observable decision and is recorded as kept with value 2
(replayed as kept: its input is 0, so the output and gradient are the same either way).
Runs with the original's packages only; never imports askdagger_mnist (ours).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_original import Stop, enter_original, original_arguments  # noqa: E402

LAYERS = ("fc1", "fc2")  # the Dropout modules' order in their LeNet: fc_dropout, last_fc_dropout


def keep_mask(inp, out, channels: bool) -> np.ndarray:
    """0 dropped, 1 kept, 2 undecidable (the unit's input is 0 everywhere)."""
    inp, out = inp.detach(), out.detach()
    if channels:
        alive = inp.flatten(2).ne(0).any(-1)
        kept = out.flatten(2).ne(0).any(-1)
    else:
        alive, kept = inp.ne(0), out.ne(0)
    mask = np.where(alive.numpy(), kept.numpy().astype(np.int8), 2)
    return mask.astype(np.int8)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    original_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", default="sensitivity", choices=("sensitivity", "specificity", "success"))
    p.add_argument("--s-des", type=float, default=0.9)
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--matmul-precision", default="theirs", choices=("theirs", "highest"),
                   help="theirs: as their train.py sets it (\"medium\"); highest: full float32, "
                        "the control that isolates what their setting changes")
    args = p.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    enter_original(args.source, args.mnist_raw, args.work)

    import torch
    import torchvision.transforms as T
    from torch_uncertainty.routines import ClassificationRoutine

    torch.set_num_threads(args.threads)
    import askdagger_mnist.train as their_train  # theirs, from --source (sets "medium")

    if args.matmul_precision == "highest":
        torch.set_float32_matmul_precision("highest")

    state = {"phase": None, "step": -1, "update": -1, "sgd": 0, "masks": [], "crops": [],
             "batches": [], "routine": None, "train_batch": None}

    def weights(prefix: str, model) -> dict:
        return {f"{prefix}{k.replace('core_model.', '').replace('.', '_')}": v.detach().numpy().copy()
                for k, v in model.state_dict().items()}

    # -- dropout masks: forward hooks on their modules, recorded in the query and train phases
    def hook(module, inputs, output):
        if state["phase"] in ("query", "train"):
            state["masks"].append(keep_mask(inputs[0], output, output.dim() == 4))

    hooked = set()

    def ensure_hooks(model) -> None:
        for m in model.modules():
            if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d)) and id(m) not in hooked:
                m.register_forward_hook(hook)
                hooked.add(id(m))

    def split_masks() -> dict:
        """conv_dropout fires twice (conv1, conv2), then fc_dropout, last_fc_dropout."""
        conv1, conv2, fc1, fc2 = state["masks"]
        state["masks"] = []
        return {"m_conv1": conv1, "m_conv2": conv2, "m_fc1": fc1, "m_fc2": fc2}

    # -- the stream: their sample() and evaluate(), wrapped where train.py looks them up
    their_sample, their_evaluate, their_sag = their_train.sample, their_train.evaluate, their_train.sag

    def sample(unseen, batch_size, datamodule, transform):
        state["step"] += 1
        samples, labels, unseen, sample_idx = their_sample(unseen, batch_size, datamodule, transform)
        state["query"] = {"sample_idx": np.asarray(sample_idx), "x": samples.numpy().copy(),
                          "labels": np.asarray(labels)}
        return samples, labels, unseen, sample_idx

    def evaluate(samples, routine):
        state["routine"] = routine
        ensure_hooks(routine.model)
        logits = []
        h = routine.model.register_forward_hook(lambda m, i, o: logits.append(o.detach().numpy().copy()))
        state["phase"] = "query"
        try:
            u, prediction = their_evaluate(samples, routine)
        finally:
            state["phase"] = None
            h.remove()
        rec = {**state.pop("query"), **weights("w_", routine.model), **split_masks(),
               "logits": logits[0], "u": u, "prediction": prediction}
        np.savez(out / f"query_{state['step']}.npz", **rec)
        return u, prediction

    def sag(u, r, k, **kwargs):
        gamma = their_sag(u, r, k, **kwargs)
        np.savez(out / f"sag_{state['step']}.npz", u=u, r=r, k=k, gamma=np.float64(gamma))
        if state["update"] + 1 >= args.updates:  # this call's r holds the last update step's q
            raise Stop
        return gamma

    their_train.sample, their_train.evaluate, their_train.sag = sample, evaluate, sag

    # -- training: the mini-batches as the loader fetches them, the crops, the loss's inputs
    real_getitems = torch.utils.data.Subset.__getitems__

    def getitems(self, indices):  # the DataLoader fetches a training mini-batch through this
        state["crops"] = []
        batch = real_getitems(self, indices)
        idx = np.asarray([self.indices[i] for i in indices])
        state["batches"].append((idx, state["crops"][-len(idx):]))
        return batch

    torch.utils.data.Subset.__getitems__ = getitems

    real_get_params = T.RandomCrop.get_params

    def get_params(img, output_size):
        i, j, h, w = real_get_params(img, output_size)
        state["crops"].append((i, j))
        return i, j, h, w

    T.RandomCrop.get_params = staticmethod(get_params)

    real_training_step = ClassificationRoutine.training_step

    def training_step(self, batch):  # their signature: Lightning passes what it declares
        inputs, targets = batch
        idx, crops = state["batches"].pop(0)
        state["train_batch"] = {"batch_idx": idx, "crop": np.asarray(crops, dtype=np.int64),
                                "x": inputs.detach().numpy().copy(), "y": targets.numpy().copy()}
        ensure_hooks(self.model)
        state["phase"] = "train"
        try:
            return real_training_step(self, batch)
        finally:
            state["phase"] = None

    ClassificationRoutine.training_step = training_step

    real_step = torch.optim.SGD.step

    def sgd_step(self, closure=None):
        routine = state["routine"]
        if state["sgd"] == 0:  # the first step of an update
            state["update"] += 1
            subset = routine.trainer.datamodule.subset
            np.savez(out / f"update_{state['update']}.npz", train_subset=np.asarray(subset, dtype=np.int64))
        before = weights("before_", routine.model)
        momentum = {f"mom_{i}": self.state[p]["momentum_buffer"].numpy().copy()
                    for i, p in enumerate(self.param_groups[0]["params"])
                    if "momentum_buffer" in self.state[p]}
        lr = self.param_groups[0]["lr"]
        loss = real_step(self, closure)  # runs the closure: training_step, backward; then the step
        rec = {**state.pop("train_batch"), **split_masks(), **before, **momentum,
               **weights("after_", routine.model), "lr": np.float64(lr)}
        np.savez(out / f"sgd_{state['update']}_{state['sgd']}.npz", **rec)
        state["sgd"] = (state["sgd"] + 1) % 5
        return loss

    torch.optim.SGD.step = sgd_step

    try:
        their_train.train(iteration=args.rep, mode=args.mode, s_des=args.s_des, accelerator="cpu",
                          log=False, verbose=False, save=False)
    except Stop:
        pass
    np.savez(out / "meta.npz", matmul_precision=np.str_(torch.get_float32_matmul_precision()),
             torch_version=np.str_(torch.__version__))
    print(f"recorded {state['step'] + 1} steps and {state['update'] + 1} updates into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
