"""Subcommands that live in their own modules; each exposes ``register(subparsers)``."""
from __future__ import annotations

from harness.commands import check, image, ingest, parse

COMMANDS = (parse.register, image.register, ingest.register, check.register)
from harness.commands.data import DATA_COMMANDS  # noqa: E402  (prepare, check, fingerprint)
