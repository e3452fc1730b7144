"""The lock-step proof: the authors' original, recorded from inside, replayed through our plain
engine component by component (docs/reproduction.md, "Lock-step").

    python bench/lockstep.py --record RECORD_DIR --data-root MNIST_ROOT [--markdown]
    python bench/lockstep.py --record RECORD_DIR --data-root MNIST_ROOT --make \\
        --original-python ORIG_VENV/bin/python --source AUTHORS_CLONE [--updates 20]

RECORD_DIR is what bench/original/record_lockstep.py wrote inside a running original (--make
runs it first, in the original's environment). No statistics: each component of ours gets
exactly the inputs the original's got, and its output is compared with the original's:

* query input: our ``normalize_pixels`` of the MNIST images at their stream positions;
* query probabilities, u and prediction: our ``mc_probs`` with their weights and their 16 passes'
  dropout masks, on our query input;
* training set: our rule (the queried stream samples, in stream order) on their stream and
  queries, against the set their trainer received;
* mini-batches: our partition rule (fresh shuffled passes, blocks of B, short last block) against
  the sizes and passes of their loader's batches;
* training input: our ``crop_and_normalize`` with their crop offsets, against what their loss saw;
* learning rate: our schedule (``schedule.epoch_ends``, ``learning_rate``) against their
  optimizer's rate at every SGD step;
* SGD step: our ``autograd_gradients`` and ``paper_optimizer`` from their weights, momentum
  buffers and rate, with their masks, against their weights after the step;
* the chain: our optimizer run on its own through all recorded updates (momentum kept across
  updates, our schedule), fed only their mini-batches, crops and masks, against their weights
  after every step and at every query.

Max abs is the largest absolute difference; max rel that divided by the largest absolute
value of theirs (a scale-free figure; float32 rounding is about 1e-7).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from askdagger_mnist.algorithm.masks import WIDTHS, DropoutMasks
from askdagger_mnist.algorithm.model import (LeNet, crop_and_normalize, mc_probs, normalize_pixels,
                                             uncertainty_from_probs)
from askdagger_mnist.algorithm.schedule import epoch_ends, learning_rate
from askdagger_mnist.algorithm.loop import LoopState
from askdagger_mnist.algorithm.training import (autograd_gradients, minibatches, paper_optimizer,
                                                set_learning_rate)
from askdagger_mnist.data.mnist import load_mnist_train

REPO = Path(__file__).resolve().parents[1]
B, C, P, UPDATE_EVERY = 128, 16, 0.4, 5
CHAIN_NOISE = 1e-6  # float32 rounding, accumulated over a few dozen steps


@dataclass
class Component:
    name: str
    count: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    mismatches: int = 0  # for discrete components: elements that differ

    def add(self, ours, theirs) -> None:
        ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
        if ours.shape != theirs.shape:
            raise AssertionError(f"{self.name}: shape {ours.shape} != {theirs.shape}")
        self.count += 1
        diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
        scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
        self.max_abs = max(self.max_abs, diff)
        self.max_rel = max(self.max_rel, diff / scale if scale else diff)
        self.mismatches += int(np.sum(ours != theirs))


@dataclass
class Table:
    rows: dict = field(default_factory=dict)
    chain_in_noise: int = 0  # SGD steps, from the first, after which the chain is within CHAIN_NOISE

    def __getitem__(self, name: str) -> Component:
        return self.rows.setdefault(name, Component(name))

    def markdown(self) -> str:
        lines = ["| component | compared | max abs diff | max rel diff | elements differing |",
                 "|---|---:|---:|---:|---:|"]
        for c in self.rows.values():
            lines.append(f"| {c.name} | {c.count} | {c.max_abs:.3g} | {c.max_rel:.3g} | {c.mismatches} |")
        steps = self["learning rate"].count
        lines += ["", f"The chain stayed within {CHAIN_NOISE:g} of their weights for the first "
                      f"{self.chain_in_noise} of {steps} SGD steps."]
        return "\n".join(lines)


def load(path: Path) -> dict:
    with np.load(path) as z:  # plain arrays only: allow_pickle stays False
        return {k: z[k] for k in z.files}


def model_from(rec: dict, prefix: str) -> LeNet:
    """Our LeNet holding their weights (their ``core_model.conv1.weight`` is our ``conv1.weight``)."""
    model = LeNet(P)
    state = {name: torch.from_numpy(rec[prefix + name.replace(".", "_")]) for name in model.state_dict()}
    model.load_state_dict(state)
    return model


def masks_from(rec: dict, n: int, passes: int) -> DropoutMasks:
    """Their recorded keep masks as ours: rows in their (pass, image) order become
    (image, pass, unit); an undecidable unit (2: input 0 everywhere) is kept."""
    out = {}
    for layer, width in WIDTHS.items():
        m = rec[f"m_{layer}"].reshape(passes, n, width).transpose(1, 0, 2)
        out[layer] = torch.from_numpy((m != 0).astype(np.float32).copy())
    return DropoutMasks(**out, scale=1.0 / (1.0 - P))


def params_of(model: LeNet) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in model.parameters()]


def theirs_params(rec: dict, prefix: str, model: LeNet) -> list[np.ndarray]:
    return [rec[prefix + name.replace(".", "_")] for name, _ in model.named_parameters()]


def replay(record: Path, data_root: Path) -> Table:
    images, labels = load_mnist_train(data_root)
    table = Table()
    steps = sorted(int(p.stem.split("_")[1]) for p in record.glob("query_*.npz"))
    updates = sorted(int(p.stem.split("_")[1]) for p in record.glob("update_*.npz"))
    if not steps or not updates:
        raise SystemExit(f"error: {record} holds no recording; make one with --make.")
    chain_model = chain_opt = None
    epochs = 0
    stream, queried = [], []
    for step in steps:
        rec = load(record / f"query_{step}.npz")
        idx = torch.from_numpy(rec["sample_idx"])
        x = normalize_pixels(images[idx])
        table["query input (normalised batch)"].add(x.numpy(), rec["x"])
        model = model_from(rec, "w_")
        probs = mc_probs(model, x, masks_from(rec, B, C))
        u, pred = uncertainty_from_probs(probs)
        logits = torch.from_numpy(rec["logits"]).reshape(C, B, 10)
        theirs = torch.softmax(logits, dim=-1).mean(dim=0)
        table["query probabilities (mean of 16 passes)"].add(probs.numpy(), theirs.numpy())
        table["query u"].add(u.double().numpy(), rec["u"])
        table["query prediction"].add(pred.numpy(), rec["prediction"])
        if chain_model is not None:
            table["chain: weights at the query"].add(
                np.concatenate([p.ravel() for p in params_of(chain_model)]),
                np.concatenate([p.ravel() for p in theirs_params(rec, "w_", chain_model)]))
        stream.append(rec["sample_idx"])
        sag_next = record / f"sag_{step + 1}.npz"
        if sag_next.exists():  # the rewards SAG got at the next step give this step's queries
            r = load(sag_next)["r"]
            queried.append(r[step * B:(step + 1) * B] != 0)
        if step > 0 and step % UPDATE_EVERY == 0 and (step // UPDATE_EVERY - 1) in updates:
            j = step // UPDATE_EVERY - 1
            subset = load(record / f"update_{j}.npz")["train_subset"]
            so_far = LoopState(step + 1, j, np.zeros(0, np.int64), {
                "stream_idx": np.concatenate(stream), "q": np.concatenate(queried[: step + 1])})
            ours_set = so_far.train_set((step + 1) * B)  # our rule: the queried, in stream order
            if len(ours_set) != len(subset):  # compare the sizes; the contents cannot line up
                ours_set, subset_cmp = [len(ours_set)], [len(subset)]
            else:
                subset_cmp = subset
            table["training set at the update"].add(ours_set, subset_cmp)
            sizes, seen = [], []
            for s in range(UPDATE_EVERY):
                sgd = load(record / f"sgd_{j}_{s}.npz")
                sizes.append(len(sgd["batch_idx"]))
                seen.append(sgd["batch_idx"])
                if chain_model is None:  # the chain starts from their weights at the first update
                    chain_model = model_from(sgd, "before_")
                    chain_opt = paper_optimizer(chain_model)
                # learning rate: their optimizer's against our schedule's
                table["learning rate"].add([learning_rate(epochs)], [sgd["lr"]])
                # training input from their crop offsets; targets
                bidx = torch.from_numpy(sgd["batch_idx"])
                xt = crop_and_normalize(images[bidx], torch.from_numpy(sgd["crop"].T.copy()))
                table["training input (crops, normalised)"].add(xt.numpy(), sgd["x"])
                table["training targets"].add(labels[bidx].numpy(), sgd["y"])
                masks = masks_from(sgd, len(bidx), 1)
                # one SGD step from their state
                step_model = model_from(sgd, "before_")
                opt = paper_optimizer(step_model)
                set_learning_rate(opt, float(sgd["lr"]))
                for i, p in enumerate(step_model.parameters()):
                    if f"mom_{i}" in sgd:
                        opt.state[p]["momentum_buffer"] = torch.from_numpy(sgd[f"mom_{i}"].copy())
                _, grads = autograd_gradients(step_model, xt, labels[bidx], masks)
                for p, g in zip(step_model.parameters(), grads):
                    p.grad = g
                opt.step()
                after = theirs_params(sgd, "after_", step_model)
                for ours_p, their_p in zip(params_of(step_model), after):
                    table["SGD step: weights after (from their state)"].add(ours_p, their_p)
                # the chain: ours on its own, fed their batches, crops and masks
                set_learning_rate(chain_opt, learning_rate(epochs))
                _, grads = autograd_gradients(chain_model, xt, labels[bidx], masks)
                for p, g in zip(chain_model.parameters(), grads):
                    p.grad = g
                chain_opt.step()
                gap = max(float(np.max(np.abs(a - b))) for a, b in zip(params_of(chain_model), after))
                for ours_p, their_p in zip(params_of(chain_model), after):
                    table["chain: weights after each SGD step"].add(ours_p, their_p)
                if gap <= CHAIN_NOISE and table.chain_in_noise == table["learning rate"].count - 1:
                    table.chain_in_noise += 1
                if s + 1 in epoch_ends(len(subset), UPDATE_EVERY, B):
                    epochs += 1
            ours_sizes = [len(b) for b in minibatches(np.arange(len(subset)), UPDATE_EVERY, B)]
            table["mini-batch sizes"].add(sizes, ours_sizes)
            passes_ok = _passes_are_permutations(seen, subset)
            table["mini-batch passes (each a permutation of the set)"].add([passes_ok], [True])
    return table


def _passes_are_permutations(batches: list[np.ndarray], subset: np.ndarray) -> bool:
    """Their batches, cut into passes of len(subset) samples: each complete pass holds every
    training sample once; an incomplete last pass holds no sample twice."""
    flat = np.concatenate(batches)
    n = len(subset)
    for start in range(0, len(flat), n):
        part = flat[start:start + n]
        want = np.sort(subset) if len(part) == n else None
        if want is not None and not np.array_equal(np.sort(part), want):
            return False
        if len(np.unique(part)) != len(part) or not np.isin(part, subset).all():
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, required=True)
    p.add_argument("--data-root", type=Path, required=True, help="folder holding MNIST/raw/*.gz")
    p.add_argument("--make", action="store_true", help="record first (needs the original's venv)")
    p.add_argument("--original-python", type=Path)
    p.add_argument("--source", type=Path, help="a clone of the authors' askdagger_mnist")
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--mode", default="sensitivity", choices=("sensitivity", "specificity", "success"),
                   help="with --make: the mode the original runs in")
    p.add_argument("--s-des", default="0.9", help="with --make: the original's s_des")
    p.add_argument("--matmul-precision", default="theirs", choices=("theirs", "highest"),
                   help="with --make: as record_lockstep.py")
    p.add_argument("--work", type=Path, help="the original's work folder (default: RECORD_DIR.work)")
    args = p.parse_args(argv)
    if args.make:
        if not (args.original_python and args.source):
            p.error("--make needs --original-python and --source")
        cmd = [str(args.original_python), str(REPO / "bench" / "original" / "record_lockstep.py"),
               "--source", str(args.source), "--mnist-raw", str(args.data_root / "MNIST" / "raw"),
               "--work", str(args.work or args.record.with_name(args.record.name + ".work")),
               "--out", str(args.record), "--updates", str(args.updates), "--mode", args.mode,
               "--s-des", args.s_des, "--matmul-precision", args.matmul_precision]
        subprocess.run(cmd, check=True)
    table = replay(args.record, args.data_root)
    meta = args.record / "meta.npz"
    if meta.exists():
        m = load(meta)
        print(f"Original: torch {m['torch_version']}, float32 matmul precision "
              f"\"{m['matmul_precision']}\".\n")
    print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
