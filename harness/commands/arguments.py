"""Argument types shared by the subcommands."""
from __future__ import annotations

import argparse
from pathlib import Path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def output_folder(path: Path, flag: str = "-o") -> Path:
    """A folder to write into (made later): refused in one line, before any work, when it or the
    nearest existing folder above it is a file (exit 2: the argument names the wrong thing)."""
    from harness.core.errors import BadInput

    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                found = "a file" if existing == path else f"{existing} is a file"
                raise BadInput(f"{flag} {path}: expected a folder, found {found}")
            break
    return path
