"""The algorithm, as docs/spec.md states it: read these first (docs/architecture.md, the map)."""
