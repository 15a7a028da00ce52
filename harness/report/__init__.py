"""Stage: results/README.md, summary files, plots and comparisons, from stored results. May import:
harness.results, harness.worker, harness.executors, harness.data, harness.planning, harness.store,
harness.core (checked by lint-imports; see docs/architecture.md).
"""
