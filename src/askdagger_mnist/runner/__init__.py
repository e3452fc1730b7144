"""One training job around the algorithm: the train rule's process (docs/architecture.md)."""
