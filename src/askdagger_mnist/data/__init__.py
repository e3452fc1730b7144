"""Files a run reads and writes (docs/architecture.md, the map)."""
