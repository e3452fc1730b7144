"""The experiment layer, what the Snakefile imports: config, its checks, run names. Standard
library, jsonschema and yaml only, never torch or numpy (docs/architecture.md)."""
