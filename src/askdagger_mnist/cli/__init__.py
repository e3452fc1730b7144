"""One command-line module per workflow stage: ``python -m askdagger_mnist.cli.<stage>``
(docs/architecture.md)."""
