"""Stage: bundles (pack, verify, import) and ingest of runs made elsewhere. May import:
harness.results, harness.worker, harness.executors, harness.data, harness.planning, harness.store,
harness.core (checked by lint-imports; see docs/architecture.md).
"""
