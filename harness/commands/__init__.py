"""Subcommands that live in their own modules; each exposes ``register(subparsers)``.

Stage: one module per command, and the engines of run, check and --repeat. May import:
harness.report, harness.evidence, harness.k8s, harness.results, harness.worker, harness.executors,
harness.data, harness.planning, harness.store, harness.core (checked by lint-imports; see
docs/architecture.md).
"""
from __future__ import annotations

from harness.commands import bundle, check, compare, compose, events, export, image, ingest, k8s, parse, plots
from harness.commands.data import DATA_COMMANDS  # under `harness data`: prepare, check, fingerprint

COMMANDS = (parse.register, image.register, ingest.register, check.register, k8s.register, compose.register,
            compare.register, bundle.register, events.register, export.register, plots.register)

__all__ = ["COMMANDS", "DATA_COMMANDS"]
