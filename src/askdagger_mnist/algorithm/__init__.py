"""The algorithm, as docs/spec.md states it: read these first.

    model     - LeNet with Monte-Carlo dropout; query-time probabilities; input transforms (§1-2)
    masks     - dropout keep masks drawn from the run's numpy Generator (§2.3)
    schedule  - the learning-rate schedule: the authors' MultiStepLR over completed epochs (§3.5)
    training  - the model update: mini-batches, autograd gradients, SGD and its rate schedule (§3.5)
    sag       - S-Aware Gating: the query threshold gamma (§4)
    loop      - one interactive run, step by step (§3)
    metrics   - whole-run metrics and windowed curves (§5.1-5.2)
"""
