"""Record every SAG call of a running original, for the SAG lock-step (bench/sag_lockstep.py).

    ORIG=~/.cache/askdagger-mnist/original-venv/bin/python
    $ORIG bench/original/record_sag.py --source PATH/TO/askdagger_mnist \\
        --mnist-raw PATH/TO/MNIST/raw --work WORKDIR --out RECORD_DIR \\
        --mode success --s-des 0.5 [--p-rand 0.1] [--no-normalization] [--no-impute] \\
        [--rep 0] [--steps 80]

Their code is not edited: in this process only, the ``sag`` that their train() calls is wrapped,
and so are the three things it uses that decide gamma: numpy's global ``np.random.rand`` (the
imputation's uniforms, only while SAG runs), scikit-learn's ``LinearRegression`` (the
normalisation's line) and ``LogisticRegression`` (the imputation's fit), as their sag module
imported them. One ``sag_{t}.npz`` per call t (no pickle):

* ``u``, ``r``, ``k``: the arrays the call received (all seen samples, this batch with r = 0);
* ``draws``: every uniform the call drew, in the order drawn (one row per ``np.random.rand``
  call; an empty (0, 0) array when it drew none);
* ``lin_coef`` (intercept, slope) of their LinearRegression, ``logit_coef`` (intercept, slope)
  and ``logit_n_iter`` of their LogisticRegression, where the call fitted them (else NaN / -1);
* ``gamma``: what their sag returned; ``q_a``: this step's active queries (``u >= gamma`` on the
  batch), ``c``: whether the novice was right (for a reader of the record).

The run stops after ``--steps`` SAG calls. ``meta.npz`` records the configuration and the
versions of numpy, scikit-learn and scipy. Runs with the original's packages only; never
imports askdagger_mnist (ours).
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_original import Stop, enter_original, original_arguments  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    original_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", default="sensitivity", choices=("sensitivity", "specificity", "success"))
    p.add_argument("--s-des", type=float, default=0.9)
    p.add_argument("--p-rand", type=float, default=0.1)
    p.add_argument("--no-normalization", action="store_true")
    p.add_argument("--no-impute", action="store_true")
    p.add_argument("--rep", type=int, default=0)
    p.add_argument("--steps", type=int, default=80, help="SAG calls to record (one per step)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    enter_original(args.source, args.mnist_raw, args.work)

    import torch

    torch.set_num_threads(args.threads)
    import askdagger_mnist.sag as their_sag_module  # theirs, from --source
    import askdagger_mnist.train as their_train

    call = {"draws": [], "lin": (np.nan, np.nan), "logit": (np.nan, np.nan), "n_iter": -1,
            "active": False, "step": -1, "c": None}
    real_rand = np.random.rand

    def rand(*shape):
        values = real_rand(*shape)
        if call["active"]:
            call["draws"].append(np.array(values, dtype=np.float64, copy=True).ravel())
        return values

    np.random.rand = rand  # their sag and train() look it up on the module at each call

    class RecordedLinearRegression(their_sag_module.LinearRegression):
        def fit(self, X, y, *a, **kw):
            fitted = super().fit(X, y, *a, **kw)
            call["lin"] = (float(fitted.intercept_), float(np.ravel(fitted.coef_)[0]))
            return fitted

    class RecordedLogisticRegression(their_sag_module.LogisticRegression):
        def fit(self, X, y, *a, **kw):
            fitted = super().fit(X, y, *a, **kw)
            call["logit"] = (float(np.ravel(fitted.intercept_)[0]), float(np.ravel(fitted.coef_)[0]))
            call["n_iter"] = int(np.ravel(fitted.n_iter_)[0])
            return fitted

    their_sag_module.LinearRegression = RecordedLinearRegression
    their_sag_module.LogisticRegression = RecordedLogisticRegression
    their_sag = their_train.sag
    their_evaluate = their_train.evaluate
    batch_size = 128

    def evaluate(samples, routine):
        u, prediction = their_evaluate(samples, routine)
        call["u_batch"] = np.asarray(u)
        return u, prediction

    def sag(u, r, k, **kwargs):
        call.update(draws=[], lin=(np.nan, np.nan), logit=(np.nan, np.nan), n_iter=-1, active=True)
        call["step"] += 1
        try:
            gamma = their_sag(u, r, k, **kwargs)
        finally:
            call["active"] = False
        draws = call["draws"]
        width = max((len(d) for d in draws), default=0)
        table = np.full((len(draws), width), np.nan)
        for i, d in enumerate(draws):
            table[i, :len(d)] = d
        u_batch = call["u_batch"]
        np.savez(out / f"sag_{call['step']}.npz", u=np.asarray(u, dtype=np.float64),
                 r=np.asarray(r, dtype=np.int64), k=np.asarray(k, dtype=np.int64),
                 draws=table, lin_coef=np.array(call["lin"]), logit_coef=np.array(call["logit"]),
                 logit_n_iter=np.int64(call["n_iter"]), gamma=np.float64(gamma),
                 q_a=np.asarray(u_batch >= gamma), batch_size=np.int64(batch_size))
        if call["step"] + 1 >= args.steps:
            raise Stop
        return gamma

    their_train.sag, their_train.evaluate = sag, evaluate
    settings = dict(p_rand=args.p_rand, s_des=args.s_des, u_normalization=not args.no_normalization,
                    impute=not args.no_impute)
    try:
        their_train.train(iteration=args.rep, mode=args.mode, accelerator="cpu", log=False,
                          verbose=False, save=False, **settings)
    except Stop:
        pass
    versions = {name: metadata.version(name) for name in ("numpy", "scikit-learn", "scipy", "torch")}
    np.savez(out / "meta.npz", mode=np.str_(args.mode), rep=np.int64(args.rep),
             n_min=np.int64(50), n_rep=np.int64(10),
             **{key: np.float64(value) if isinstance(value, float) else np.bool_(value)
                for key, value in settings.items()},
             **{f"version_{name}": np.str_(v) for name, v in versions.items()})
    print(f"recorded {call['step'] + 1} SAG calls into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
