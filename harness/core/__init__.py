"""Stage: errors and exit codes, atomic files, locks, terminal output: what every stage uses. May
import: no other harness package (checked by lint-imports; see docs/architecture.md).
"""
