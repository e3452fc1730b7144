"""Benchmark, evidence for issue 23's open decision: what hand-fused kernels would buy the loop.
Builds two PROTOTYPE C++ extensions (AVX-512, one thread; not used by the package or the
workflow) with torch.utils.cpp_extension, checks each against the fast engine's part it would
replace, and times both in interleaved rounds:

* bench/prototypes/fused_query.cpp against ``fast.query.mc_probs_shared`` (and the plain
  ``algorithm.model.mc_probs``): one query step, 128 images x 16 passes;
* bench/prototypes/fused_sgd_step.cpp against ``fast.backprop.written_out_gradients``: one SGD
  step's loss and gradients, 128 samples.

    python bench/fused_kernels.py [--rounds 300] [--build-dir DIR] [--json out.json]

Needs a C++ compiler and ninja (what torch.utils.cpp_extension builds with) and a CPU with
AVX-512; the first build takes about a minute (kept in --build-dir for the next call). Inputs:
a freshly initialised LeNet, normal random images, p = 0.4 (the query's time does not depend on
the values; the SGD kernel's backward skips zero gradients, so it runs a little slower on
MNIST's crops: see docs/benchmarks.md). Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
PROTOTYPES = REPO / "bench" / "prototypes"
QUERY_MODES = {"FC by torch.addmm": 0, "FC hand-written, 8x2 tiles": 2}  # the kernel's mode
BATCH, PASSES, DROPOUT = 128, 16, 0.4
FAST_QUERY, FAST_STEP = "fast engine (mc_probs_shared)", "fast engine (written_out_gradients)"


def missing_tools() -> str | None:
    """What the build lacks, in words, or None."""
    if not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")):
        return "a C++ compiler (c++ or g++ on PATH)"
    if not shutil.which("ninja"):
        return "ninja (pip install ninja, or the system's package)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "Python's C headers (Python.h; e.g. the python3-dev package)"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "a Linux CPU with AVX-512 (/proc/cpuinfo cannot be read)"
    if "avx512f" not in flags:
        return "a CPU with AVX-512 (the prototypes' intrinsics)"
    return None


def build(name: str, build_dir: Path):
    from torch.utils.cpp_extension import load

    folder = build_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    return load(f"askdagger_{name}", [str(PROTOTYPES / f"{name}.cpp")],
                extra_cflags=["-O3", "-march=native"], build_directory=str(folder), verbose=False)


def model_and_images(seed: int, batch: int):
    import torch

    from askdagger_mnist.algorithm.model import LeNet

    torch.manual_seed(seed)
    return LeNet(), torch.randn(batch, 1, 28, 28)


def masks_for(seed: int, batch: int, passes: int):
    import numpy as np
    import torch

    from askdagger_mnist.algorithm.masks import draw_masks

    return draw_masks(np.random.default_rng(seed), batch, passes, DROPOUT, torch.device("cpu"))


def parameters(model) -> list:
    return [p.detach() for p in model.parameters()]  # conv1 w, b, conv2 w, b, fc1..fc3 w, b


def mask_tensors(masks) -> list:
    return [masks.conv1.contiguous(), masks.conv2.contiguous(), masks.fc1.contiguous(),
            masks.fc2.contiguous()]


def fused_query(ext, model, x, masks, mode: int):
    """The query kernel: (B, 10) mean probabilities over the masks' passes."""
    import torch

    with torch.inference_mode():
        return ext.mc_probs_fused(x.contiguous(), *parameters(model), *mask_tensors(masks),
                                  masks.scale, mode, False)


def fused_step(ext, model, x, y, masks):
    """The SGD-step kernel: (loss, gradients in model.parameters() order)."""
    import torch

    with torch.no_grad():
        out = ext.sgd_grads(x.contiguous(), y, *parameters(model), *mask_tensors(masks),
                            masks.scale, False)
    return out[0], out[1:]


def query_agreement(ext, seeds=(0, 1, 2)) -> dict:
    """Largest absolute difference of the query kernel's probabilities from the fast and the
    plain engine's, over seeds and two shapes; the two engines' own difference beside it."""
    from askdagger_mnist.algorithm.model import mc_probs
    from askdagger_mnist.fast.query import mc_probs_shared

    worst = {"fused vs fast": 0.0, "fused vs plain": 0.0, "fast vs plain": 0.0}
    for seed in seeds:
        for batch, passes in ((BATCH, PASSES), (5, 8)):
            model, x = model_and_images(seed, batch)
            masks = masks_for(seed, batch, passes)
            fast, plain = mc_probs_shared(model, x, masks), mc_probs(model, x, masks)
            for mode in QUERY_MODES.values():
                fused = fused_query(ext, model, x, masks, mode)
                worst["fused vs fast"] = max(worst["fused vs fast"], (fused - fast).abs().max().item())
                worst["fused vs plain"] = max(worst["fused vs plain"], (fused - plain).abs().max().item())
            worst["fast vs plain"] = max(worst["fast vs plain"], (fast - plain).abs().max().item())
    return worst


def step_agreement(ext, seeds=(0, 1, 2)) -> dict:
    """Largest difference of the SGD-step kernel's loss and gradients from the fast engine's,
    each relative to the fast engine's largest magnitude, over seeds and two batch sizes."""
    import torch

    from askdagger_mnist.fast.backprop import written_out_gradients

    worst = {"loss": 0.0, "gradients": 0.0}
    for seed in seeds:
        for batch in (BATCH, 37):
            model, x = model_and_images(seed, batch)
            y = torch.randint(0, 10, (batch,))
            masks = masks_for(seed, batch, 1)
            loss, grads = written_out_gradients(model, x, y, masks)
            f_loss, f_grads = fused_step(ext, model, x, y, masks)
            worst["loss"] = max(worst["loss"], abs(f_loss.item() - loss.item()) / abs(loss.item()))
            for ours, ref in zip(f_grads, grads, strict=True):
                rel = ((ours - ref).abs().max() / ref.abs().max()).item()
                worst["gradients"] = max(worst["gradients"], rel)
    return worst


def median_ms(calls: dict, rounds: int) -> dict:
    """Median ms per call of each call, one call of each per round (interleaved, so that the
    machine's drift touches all alike), after 20 calls of each to warm up."""
    for call in calls.values():
        for _ in range(20):
            call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: round(1e3 * statistics.median(t), 3) for name, t in times.items()}


def query_timings(ext, rounds: int) -> dict:
    from askdagger_mnist.fast.query import mc_probs_shared

    model, x = model_and_images(0, BATCH)
    masks = masks_for(0, BATCH, PASSES)
    calls = {FAST_QUERY: lambda: mc_probs_shared(model, x, masks)}
    for name, mode in QUERY_MODES.items():
        calls[f"fused prototype, {name}"] = lambda mode=mode: fused_query(ext, model, x, masks, mode)
    return median_ms(calls, rounds)


def step_timings(ext, rounds: int) -> dict:
    import torch

    from askdagger_mnist.fast.backprop import written_out_gradients

    model, x = model_and_images(0, BATCH)
    y = torch.randint(0, 10, (BATCH,))
    masks = masks_for(0, BATCH, 1)
    return median_ms({FAST_STEP: lambda: written_out_gradients(model, x, y, masks),
                      "fused prototype": lambda: fused_step(ext, model, x, y, masks)}, rounds)


def table(title: str, medians: dict, base: str) -> str:
    rows = [f"| {name} | {ms:.2f} | {medians[base] / ms:.2f}x |" for name, ms in medians.items()]
    return "\n".join([f"| {title} | ms per call | vs the fast engine |", "|---|---|---|", *rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--build-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / f"askdagger-fused-kernels-{os.getuid()}")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    lacking = missing_tools()
    if lacking:
        print(f"error: building the prototypes needs {lacking}.", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(1)
    query_ext, step_ext = build("fused_query", args.build_dir), build("fused_sgd_step", args.build_dir)
    result = {"rounds": args.rounds,
              "query": {"ms": query_timings(query_ext, args.rounds),
                        "max_abs_difference": query_agreement(query_ext)},
              "sgd_step": {"ms": step_timings(step_ext, args.rounds),
                           "max_relative_difference": step_agreement(step_ext)}}
    print(f"One thread, medians of {args.rounds} interleaved rounds.\n")
    print(table(f"query step ({BATCH} images x {PASSES} passes)", result["query"]["ms"], FAST_QUERY))
    print("\nLargest absolute difference of the mean probabilities: " + ", ".join(
        f"{k} {v:.1e}" for k, v in result["query"]["max_abs_difference"].items()) + "\n")
    print(table(f"SGD step ({BATCH} samples)", result["sgd_step"]["ms"], FAST_STEP))
    print("\nLargest difference from the fast engine, relative to its largest magnitude: " + ", ".join(
        f"{k} {v:.1e}" for k, v in result["sgd_step"]["max_relative_difference"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
