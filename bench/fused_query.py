"""Benchmark, evidence for issue 23's open decision: what a hand-fused kernel would buy the
query pass. Builds bench/prototypes/fused_query.cpp (a PROTOTYPE C++ extension, AVX-512, one
thread; not used by the package or the workflow) with torch.utils.cpp_extension, checks it
against the fast engine's query, ``fast.query.mc_probs_shared``, and the plain one,
``algorithm.model.mc_probs``, and times it against ``mc_probs_shared`` in interleaved rounds.

    python bench/fused_query.py [--rounds 300] [--build-dir DIR] [--json out.json]

Needs a C++ compiler and ninja (what torch.utils.cpp_extension builds with) and a CPU with
AVX-512; the first build takes about half a minute (kept in --build-dir for the next call).
Inputs: one query step as the loop makes it, 128 images x 16 passes, p = 0.4, a freshly
initialised LeNet and normal random images (the time does not depend on the values). Prints
a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SOURCE = REPO / "bench" / "prototypes" / "fused_query.cpp"
MODES = {"FC by torch.addmm": 0, "FC hand-written, 8x2 tiles": 2}  # the kernel's mode argument
BATCH, PASSES, DROPOUT = 128, 16, 0.4


def missing_tools() -> str | None:
    """What the build lacks, in words, or None."""
    if not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")):
        return "a C++ compiler (c++ or g++ on PATH)"
    if not shutil.which("ninja"):
        return "ninja (pip install ninja, or the system's package)"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "a Linux CPU with AVX-512 (/proc/cpuinfo cannot be read)"
    if "avx512f" not in flags:
        return "a CPU with AVX-512 (the prototype's intrinsics)"
    return None


def build(build_dir: Path):
    from torch.utils.cpp_extension import load

    build_dir.mkdir(parents=True, exist_ok=True)
    return load("askdagger_fused_query", [str(SOURCE)], extra_cflags=["-O3", "-march=native"],
                build_directory=str(build_dir), verbose=False)


def inputs(seed: int = 0, batch: int = BATCH, passes: int = PASSES):
    import numpy as np
    import torch

    from askdagger_mnist.algorithm.masks import draw_masks
    from askdagger_mnist.algorithm.model import LeNet

    torch.manual_seed(seed)
    model = LeNet().eval()
    x = torch.randn(batch, 1, 28, 28)
    masks = draw_masks(np.random.default_rng(seed), batch, passes, DROPOUT, torch.device("cpu"))
    return model, x, masks


def fused_call(ext, model, x, masks, mode: int):
    """The kernel on the model's parameters and the masks: (B, 10) mean probabilities."""
    import torch

    m = model
    with torch.inference_mode():
        return ext.mc_probs_fused(
            x.contiguous(), m.conv1.weight, m.conv1.bias, m.conv2.weight, m.conv2.bias,
            m.fc1.weight, m.fc1.bias, m.fc2.weight, m.fc2.bias, m.fc3.weight, m.fc3.bias,
            masks.conv1.contiguous(), masks.conv2.contiguous(), masks.fc1.contiguous(),
            masks.fc2.contiguous(), masks.scale, mode, False)


def agreement(ext, seeds=(0, 1, 2)) -> dict:
    """Largest absolute difference of the kernel's probabilities from the fast and the plain
    engine's, over a few seeds and shapes; the two engines' own difference beside it."""
    from askdagger_mnist.algorithm.model import mc_probs
    from askdagger_mnist.fast.query import mc_probs_shared

    worst = {"fused vs fast": 0.0, "fused vs plain": 0.0, "fast vs plain": 0.0}
    for seed in seeds:
        for batch, passes in ((BATCH, PASSES), (5, 8)):
            model, x, masks = inputs(seed, batch, passes)
            fast, plain = mc_probs_shared(model, x, masks), mc_probs(model, x, masks)
            for mode in MODES.values():
                fused = fused_call(ext, model, x, masks, mode)
                worst["fused vs fast"] = max(worst["fused vs fast"], (fused - fast).abs().max().item())
                worst["fused vs plain"] = max(worst["fused vs plain"], (fused - plain).abs().max().item())
            worst["fast vs plain"] = max(worst["fast vs plain"], (fast - plain).abs().max().item())
    return worst


def timings(ext, rounds: int) -> dict:
    """Median ms per call of the fast engine's query and of each kernel mode, one call of each
    per round (interleaved, so that the machine's drift touches all alike)."""
    from askdagger_mnist.fast.query import mc_probs_shared

    model, x, masks = inputs()
    calls = {"fast engine (mc_probs_shared)": lambda: mc_probs_shared(model, x, masks)}
    for name, mode in MODES.items():
        calls[f"fused prototype, {name}"] = lambda mode=mode: fused_call(ext, model, x, masks, mode)
    times = {name: [] for name in calls}
    for call in calls.values():
        for _ in range(20):
            call()
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: round(1e3 * statistics.median(t), 3) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--build-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / f"askdagger-fused-query-{os.getuid()}")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    lacking = missing_tools()
    if lacking:
        print(f"error: building the prototype needs {lacking}.", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(1)
    ext = build(args.build_dir)
    worst = agreement(ext)
    medians = timings(ext, args.rounds)
    base = medians["fast engine (mc_probs_shared)"]
    print(f"One query step ({BATCH} images x {PASSES} passes), one thread, medians of "
          f"{args.rounds} interleaved rounds:\n")
    print("| query pass | ms per call | vs the fast engine |\n|---|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.2f} | {base / ms:.2f}x |")
    print("\nLargest absolute difference of the mean probabilities: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "ms": medians,
                                         "max_abs_difference": worst}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
