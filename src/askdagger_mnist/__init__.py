"""askdagger-mnist: S-Aware Gating (SAG) on MNIST, reproduced end to end.

The behaviour is docs/spec.md, whose section numbers the code cites; docs/architecture.md is
the map of this package, read top to bottom: experiment/ (what the Snakefile imports),
algorithm/ (read first), fast/, runner/, data/, analysis/, prebuilt/, cli/.
"""

__version__ = "0.2.0"
