"""askdagger-mnist: S-Aware Gating (SAG) on MNIST, reproduced end to end.

A map of the package, read top to bottom (docs/architecture.md says more; the behaviour is
docs/spec.md, whose section numbers the code cites):

    settings      - RunSettings: the one source of every default; modes; seeds (stdlib only)
    naming        - run directory names (stdlib only; the Snakefile imports it)
    config        - the workflow config: types, schema, one-sentence errors (no torch/numpy)
    config_shape  - a config's shape before anything walks it: alias bombs, non-text names, keys twice (stdlib)
    config_checks - what passes the schema but cannot work; --unlock under a live run (stdlib)
    errors        - UserError: one sentence naming the file or key and what to do
    algorithm/    - the algorithm, plainly: model, masks, training, sag, loop, metrics
    fast/         - the same functions, faster, each bound to its plain twin by a test
    engines       - the plain and the fast engine: which part each uses (the swap table)
    bookkeeping   - wall time, progress lines, checkpoints: the observer of the loop
    devices       - the run's device: cpu, or a GPU slot; how run.json names it
    gpu_slots     - GPU slots shared by a workstation's jobs: least-loaded GPU, flock (stdlib)
    runner/       - one training job around the algorithm: train, publish
    data/         - MNIST files, run directories, checkpoints, kept copies of finished runs
    analysis/     - aggregate tables, figures, ablation tables, the SAG illustration
    prebuilt/     - downloads, safe extraction, the authors' format, our bundles
    cli/          - one command per workflow stage: python -m askdagger_mnist.cli.<stage>

The modules train, download_mnist, aggregate, plots and fetch_results at this level only
forward to cli/, so that commands written before 0.2 (python -m askdagger_mnist.train ...)
keep working.
"""

__version__ = "0.2.0"
