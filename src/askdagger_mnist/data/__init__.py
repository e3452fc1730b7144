"""Files a run reads and writes.

    mnist       - the MNIST archives: fetch what is missing (atomic, MD5-checked), load
    mirrors     - one archive from the mirrors into the raw folder, one process at a time
    rundir      - run directories (arrays.npz, run.json, model.pt), written atomically
    checkpoint  - mid-run checkpoints, for a bit-identical resume (docs/spec.md §6.3)
    kept_runs   - a finished run's kept copy: a rerun of its job restores it, training nothing
    invariants  - what every run satisfies (§3), checked on every imported run
"""
