"""The fast engine: the plain engine's parts swapped for their fast twins (docs/spec.md §7.2),
each bound to its plain twin by a test in tests/fast/; ``bench/full_run.py --swap`` measures
what each swap buys."""

from __future__ import annotations

from ..algorithm.engine import Engine
from . import backprop, optim, query
from . import sag as fast_sag

FAST = Engine(
    name="fast",
    mc_probs=query.mc_probs_shared,
    gradients=backprop.written_out_gradients,
    make_optimizer=lambda m: optim.NesterovSGD(m.parameters()),
    sag_threshold=fast_sag.sag_threshold_fast,
)
