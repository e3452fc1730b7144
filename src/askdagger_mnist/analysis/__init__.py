"""Run directories to tables and figures, and the reproduction verdict (docs/architecture.md)."""
