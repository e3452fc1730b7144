"""The two engines: the same algorithm (docs/spec.md §7), component by component.

An engine is the four parts of a run that have a plain and a fast form. (Both engines draw
the same dropout masks, ``algorithm.masks.draw_masks``, from the same generator: docs/spec.md
§7.3.) ``PLAIN`` is the
readable reference, written with the library's own parts (``algorithm/``). ``FAST`` swaps in
a fast twin (``fast/``) only where a measurement showed it buys at least 5% of a full run's
wall time (docs/architecture.md, "Swap table"; ``bench/full_run.py --swap`` measures it).
Each fast twin is bound to its plain part by a test in tests/fast/.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from .algorithm import model, sag, training
from .fast import backprop, optim, query
from .fast import sag as fast_sag


@dataclass(frozen=True)
class Engine:
    name: str
    mc_probs: Callable  # (model, x, masks) -> mean softmax (B, 10)                 §2.2
    gradients: Callable  # (model, x, y, masks) -> (loss, grads)                     §3.5
    make_optimizer: Callable  # (model) -> optimizer with .step() from .grad          §3.5
    sag_threshold: Callable  # (u, r, k, SagConfig, rng) -> gamma                   §4


PLAIN = Engine(
    name="plain",
    mc_probs=model.mc_probs,
    gradients=training.autograd_gradients,
    make_optimizer=training.paper_optimizer,
    sag_threshold=sag.sag_threshold,
)

FAST = Engine(
    name="fast",
    mc_probs=query.mc_probs_shared,
    gradients=backprop.written_out_gradients,
    make_optimizer=lambda m: optim.NesterovSGD(m.parameters()),
    sag_threshold=fast_sag.sag_threshold_fast,
)

ENGINES = {engine.name: engine for engine in (PLAIN, FAST)}

# The parts an engine chooses, by field name (bench/full_run.py --swap swaps one at a time
# for the other engine's; docs/architecture.md has the measured table).
COMPONENTS = tuple(f.name for f in fields(Engine) if f.name != "name")


def engine_named(name: str) -> Engine:
    return ENGINES[name]


def engine_for(choice: str, device) -> Engine:
    """The engine of config/CLI value ``choice`` on ``device`` (a torch.device): ``auto`` is
    the fast engine on every device, measured faster on the CPU and on CUDA (settings.py)."""
    del device  # the same choice everywhere, since both were measured (docs/benchmarks.md)
    return engine_named("fast" if choice == "auto" else choice)
