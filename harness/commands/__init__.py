"""Subcommands that live in their own modules; each exposes ``register(subparsers)``."""
from __future__ import annotations

from harness.commands import bundle, check, compare, compose, image, ingest, k8s, parse

COMMANDS = (parse.register, image.register, ingest.register, check.register, k8s.register, compose.register,
            compare.register, bundle.register)
from harness.commands.data import DATA_COMMANDS  # noqa: E402  (prepare, check, fingerprint)
