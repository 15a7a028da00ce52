"""One error type for the whole harness: every ``HarnessError`` carries the exit code the CLI
returns for it, and ``str()`` is the one line shown to the user (file, field, what is expected).

The CLI maps errors to exit codes in exactly one place (``harness.cli.main``); new error kinds
subclass the class whose exit code they share.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """Base class; ``exit_code`` is what ``harness`` exits with when this reaches the CLI."""

    exit_code: int = EXIT_RUN_FAILED


class BadInput(HarnessError):
    """Bad input: a recipe, a dataset, a log, CLI arguments or a run folder (exit 2)."""

    exit_code = EXIT_BAD_INPUT


MAX_MESSAGE_CHARS = 2000  # a message may quote hostile input (a name, a line): never megabytes


def one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as the one line the harness shows: whitespace runs folded, cut at ``limit``."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line) - limit} more characters)"


def first_problem(error) -> str:
    """``train.iterations: Input should be greater than 0`` from a pydantic ValidationError: the
    first problem, in the one line the harness shows."""
    first = error.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc']) or '(top level)'}: {first['msg']}"


# The historical name: recipe problems are bad input.
RecipeError = BadInput


class EnvironmentNotReady(HarnessError):
    """The machine cannot run this yet: Docker engine unreachable, image missing or stale, devices
    absent, results folder not writable (exit 3). ``str()`` names what is missing and how to fix it."""

    exit_code = EXIT_ENVIRONMENT


class RunFailed(HarnessError):
    """The run itself failed: training error, killed, timeout (exit 1)."""

    exit_code = EXIT_RUN_FAILED


class Interrupted(HarnessError):
    """Ctrl-C / SIGTERM (exit 130)."""

    exit_code = EXIT_INTERRUPTED
