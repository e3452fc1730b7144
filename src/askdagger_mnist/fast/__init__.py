"""The same functions as ``algorithm/``, faster; each names its plain twin and the test in
tests/fast/ that binds them (docs/architecture.md, the map and the swap table)."""
