"""Every subcommand, one module each; each exposes ``register(subparsers)`` (harness.cli only
builds the parser from them and maps errors to exit codes).

Stage: one module per command, and the engines of run, check and --repeat. May import:
harness.report, harness.evidence, harness.k8s, harness.results, harness.worker, harness.executors,
harness.data, harness.planning, harness.store, harness.core (checked by lint-imports; see
docs/architecture.md).
"""
from __future__ import annotations

from harness.commands import (bundle, check, compare, compose, data, events, export, image, ingest, k8s, parse, plan,
                              plots, report, run, runs, schema)

# In the order of `harness --help`; `harness data` registers its own (synth, fetch, prepare, check, fingerprint).
COMMANDS = (plan.register, run.register, report.register, runs.register, schema.register, data.register,
            parse.register, image.register, ingest.register, check.register, k8s.register, compose.register,
            compare.register, bundle.register, events.register, export.register, plots.register)

__all__ = ["COMMANDS"]
