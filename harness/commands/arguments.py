"""Argument types and helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import sys
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


DEFAULT_RESULTS = Path("results")


def recipe_arguments(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    from harness.executors import all_executors

    parser.add_argument("recipe", type=Path, nargs="?" if optional else None,
                        help="a recipe YAML file, e.g. recipes/smoke_cpu.yaml")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe field (dotted, YAML value), e.g. --set train.iterations=20; repeatable",
    )
    executors = all_executors()
    parser.add_argument(
        "--executor", default=None, metavar="NAME",  # an unknown name is one line of bad input (get_executor)
        help="where to run: " + "; ".join(f"{cls.name}: {_summary(cls)}" for cls in executors) + "; default: docker "
        "when the recipe names an image and --executor is not given, except for the one-node CPU recipes, which "
        "default to local",
    )


def _summary(cls) -> str:
    """An executor's first docstring line, for --help (argparse formats help with %)."""
    return (cls.__doc__ or "").strip().splitlines()[0].rstrip(".").replace("%", "%%")


def repeat_count(text: str) -> int:
    """--repeat N: ASCII digits, 1..1000 (harness.results.groups.MAX_REPEAT), refused by argparse in one line."""
    from harness.results.groups import MAX_REPEAT

    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: expected a whole number from 1 to {MAX_REPEAT}")
    return int(text)


def say(line: str) -> None:
    """A status line on stderr; a closed stderr (terminal gone) drops it, never fails the run."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
