"""Stage: run folders and their typed records (the only reader and writer), the run lock, provenance.
May import: harness.core (checked by lint-imports; see docs/architecture.md).
"""
