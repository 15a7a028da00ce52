"""What runs where training runs (this machine or a container): job.json -> mmengine Runner.

Stage: what runs where training runs: job.json -> mmengine Runner, events, checkpoints. May import:
harness.planning, harness.store, harness.core (checked by lint-imports; see docs/architecture.md).
"""
