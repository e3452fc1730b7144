"""Prebuilt results: downloads and imports, every downloaded byte untrusted (docs/architecture.md)."""
