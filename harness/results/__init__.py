"""Stage: logs and events -> numbers, verdicts and group statistics (RunResult). May import:
harness.worker, harness.executors, harness.data, harness.planning, harness.store, harness.core
(checked by lint-imports; see docs/architecture.md).
"""
