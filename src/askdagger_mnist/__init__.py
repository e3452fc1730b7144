"""askdagger-mnist: S-Aware Gating (SAG) on MNIST, reproduced end to end.

Modules, one job each:
    settings  - the run settings (defaults of the paper), seeds, run paths
    data      - MNIST download (torchvision, configurable mirrors) and loading
    model     - LeNet with Monte-Carlo dropout and the fast MC uncertainty
    sag       - the SAG threshold (pure numpy)
    loop      - the interactive training loop with checkpoints
    runio     - reading and atomically writing run directories
    metrics   - whole-run metrics and windowed curves (pure numpy)
    train     - CLI: one run
"""

__version__ = "0.1.0"
