"""Subcommands that live in their own modules; each exposes ``register(subparsers)``."""
from __future__ import annotations

from harness.commands import image, parse

COMMANDS = (parse.register, image.register)
DATA_COMMANDS: tuple = ()
