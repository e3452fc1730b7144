"""The SAG lock-step: every SAG call of a running original, replayed through our SAG
(docs/reproduction.md, "SAG in lock-step").

    python bench/sag_lockstep.py RECORD_DIR [RECORD_DIR ...] [--markdown]

Each RECORD_DIR is what bench/original/record_sag.py wrote inside a running original: per call,
the u, r, k their ``sag`` received, every uniform it drew, the coefficients of its two fits and
the gamma it returned. Our ``sag_threshold`` (plain, algorithm/sag.py) and
``sag_threshold_fast`` (fast/sag.py) get exactly those inputs, and a generator that hands out
exactly their uniforms in the order they were drawn. Compared per call: gamma, the batch's
active-query decisions (``u >= gamma`` on the call's last batch), and our fits' coefficients
against theirs. No statistics: any difference beyond float rounding is a difference of rule.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from askdagger_mnist.algorithm.sag import SagConfig, sag_details  # noqa: E402
from askdagger_mnist.fast.sag import sag_threshold_fast  # noqa: E402


class RecordedUniforms:
    """Stands in for a numpy Generator: ``random(shape)`` returns the original's recorded
    uniforms, row after row, in the order its SAG drew them."""

    def __init__(self, rows: np.ndarray):
        self.values = np.concatenate([row[~np.isnan(row)] for row in rows]) if rows.size else np.empty(0)
        self.used = 0

    def random(self, shape) -> np.ndarray:
        n = int(np.prod(shape))
        if self.used + n > len(self.values):
            raise ValueError(f"our SAG asked for more uniforms ({self.used + n}) than the original drew "
                             f"({len(self.values)})")
        out = self.values[self.used:self.used + n].reshape(shape)
        self.used += n
        return out


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


def config_of(meta: dict) -> SagConfig:
    return SagConfig(mode=str(meta["mode"]), s_des=float(meta["s_des"]), p_rand=float(meta["p_rand"]),
                     normalization=bool(meta["u_normalization"]), imputation=bool(meta["impute"]),
                     n_min=int(meta["n_min"]), n_rep=int(meta["n_rep"]))


@dataclass
class CaseResult:
    name: str
    calls: int
    fallback_calls: int
    fitted_calls: int  # calls that fitted the logistic regression (imputation on, a window)
    normalised_calls: int  # calls that fitted the normalisation line
    gamma_max_abs: dict  # engine -> max |gamma ours - gamma theirs| over the calls
    decisions_differ: dict  # engine -> active decisions that differ, over all calls
    calls_differ: dict  # engine -> calls whose gamma differs by more than 1e-9
    uniforms_unused: int  # calls where ours used fewer uniforms than theirs drew
    logit_max_abs: float  # max |coefficient ours - theirs| of the logistic fit
    lin_max_abs: float  # max |coefficient ours - theirs| of the normalisation line
    active_ours: int
    active_theirs: int


def replay_case(record: Path) -> CaseResult:
    meta = load(record / "meta.npz")
    config = config_of(meta)
    calls = sorted(record.glob("sag_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    engines = ("plain", "fast")
    gamma_max = dict.fromkeys(engines, 0.0)
    decisions = dict.fromkeys(engines, 0)
    calls_differ = dict.fromkeys(engines, 0)
    fallback = fitted = normalised = unused = 0
    logit_max = lin_max = 0.0
    active_ours = active_theirs = 0
    for path in calls:
        c = load(path)
        u, r, k, theirs = c["u"], c["r"], c["k"], float(c["gamma"])
        batch = u[-int(c["batch_size"]):]
        q_theirs = batch >= theirs
        active_theirs += int(q_theirs.sum())
        plain_draws = RecordedUniforms(c["draws"])
        details = sag_details(u, r, k, config, plain_draws)  # the plain SAG, with its fits
        ours = {"plain": details.gamma,
                "fast": sag_threshold_fast(u, r, k, config, RecordedUniforms(c["draws"]))}
        unused += int(plain_draws.used != len(plain_draws.values))
        for engine, gamma in ours.items():
            diff = abs(gamma - theirs) if not (np.isinf(gamma) and gamma == theirs) else 0.0
            gamma_max[engine] = max(gamma_max[engine], diff)
            calls_differ[engine] += int(diff > 1e-9)
            decisions[engine] += int(np.sum((batch >= gamma) != q_theirs))
        active_ours += int(np.sum(batch >= details.gamma))
        if details.fallback:
            fallback += 1
            continue
        if config.normalization:
            normalised += 1
            lin_max = max(lin_max, float(np.max(np.abs(np.array(details.lin_coef) - c["lin_coef"]))))
        if details.logit_coef is not None:
            fitted += 1
            logit_max = max(logit_max, float(np.max(np.abs(np.array(details.logit_coef) - c["logit_coef"]))))
    return CaseResult(record.name, len(calls), fallback, fitted, normalised, gamma_max, decisions, calls_differ,
                      unused, logit_max, lin_max, active_ours, active_theirs)


def markdown(results: list[CaseResult]) -> str:
    head = ("| case | calls (fallback) | max abs gamma diff, plain / fast | calls differing "
            "| decisions differing, plain / fast | active queries, ours / theirs "
            "| logistic fit, max coef diff | normalisation line, max coef diff |")
    lines = [head, "|" + "---|" * 8]
    for res in results:
        lines.append(
            f"| {res.name} | {res.calls} ({res.fallback_calls}) "
            f"| {res.gamma_max_abs['plain']:.2g} / {res.gamma_max_abs['fast']:.2g} "
            f"| {res.calls_differ['plain']} / {res.calls_differ['fast']} "
            f"| {res.decisions_differ['plain']} / {res.decisions_differ['fast']} "
            f"| {res.active_ours} / {res.active_theirs} "
            f"| {f'{res.logit_max_abs:.2g}' if res.fitted_calls else 'not fitted'} "
            f"| {f'{res.lin_max_abs:.2g}' if res.normalised_calls else 'not fitted'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", type=Path, nargs="+", help="folders written by bench/original/record_sag.py")
    args = p.parse_args(argv)
    results = [replay_case(record) for record in args.records]
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
