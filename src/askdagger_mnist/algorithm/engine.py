"""The engine definition and the plain engine (docs/spec.md §7).

An engine is the four parts of a run that have a plain and a fast form. (Both engines draw
the same dropout masks, ``masks.draw_masks``, from the same generator: docs/spec.md §7.3.)
``PLAIN`` is the readable reference, written with the library's own parts; the fast engine,
``fast.engine.FAST``, swaps in a fast twin only where a measurement showed it buys at least
5% of a full run's wall time (docs/architecture.md, "Swap table").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from . import model, sag, training


@dataclass(frozen=True)
class Engine:
    name: str
    mc_probs: Callable  # (model, x, masks) -> mean softmax (B, 10)                 §2.2
    gradients: Callable  # (model, x, y, masks) -> (loss, grads)                     §3.5
    make_optimizer: Callable  # (model) -> optimizer with .step() from .grad          §3.5
    sag_threshold: Callable  # (u, r, k, SagConfig, rng) -> gamma                   §4


# The parts an engine chooses, by field name (bench/full_run.py --swap swaps one at a time
# for the other engine's; docs/architecture.md has the measured table).
COMPONENTS = tuple(f.name for f in fields(Engine) if f.name != "name")

PLAIN = Engine(
    name="plain",
    mc_probs=model.mc_probs,
    gradients=training.autograd_gradients,
    make_optimizer=training.paper_optimizer,
    sag_threshold=sag.sag_threshold,
)
