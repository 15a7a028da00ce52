"""One error type for the whole harness: every ``HarnessError`` carries the exit code the CLI
returns for it, and ``str()`` is the one line shown to the user (file, field, what is expected).

Errors become exit codes in exactly one place (``report_error``, called by ``harness.cli.main``
and the worker's entry point); new error kinds subclass the class whose exit code they share.
"""
from __future__ import annotations

import errno
import functools
import sys

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM / SIGHUP, or the job cancelled (what a shell reports for SIGINT)
EXIT_TIMEOUT = 124  # the recipe's timeout_minutes ran out (what coreutils `timeout` exits with)

# The machine, not the input: a full disk, a read-only or forbidden folder (exit 3).
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM)


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


class EnvironmentNotReady(HarnessError):
    """The machine cannot run this yet: Docker engine unreachable, image missing or stale, devices
    absent, results folder not writable (exit 3). ``str()`` names what is missing and how to fix it."""

    exit_code = EXIT_ENVIRONMENT


def environment_problem(exc: OSError) -> EnvironmentNotReady | None:
    """``exc`` as exit 3 when the machine is at fault (disk full, read-only): every command alike."""
    if exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return EnvironmentNotReady(f"{where}{exc.strerror or exc}")


def report_error(prog: str, error: HarnessError) -> int:
    """How every entry point (the CLI, the worker) ends on a HarnessError: one line on stderr
    naming the program, and the error's own exit code. A closed stderr drops the line."""
    message = "; ".join(line for line in str(error).splitlines() if line.strip())
    try:
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return error.exit_code


def exits_with_code(prog: str):
    """Decorates a command function whose callers take its exit code (``args.func(args)``) rather
    than go through ``harness.cli.main``: its HarnessErrors end as there, via ``report_error``."""
    def decorate(command):
        @functools.wraps(command)
        def run(*args, **kwargs) -> int:
            try:
                return command(*args, **kwargs)
            except HarnessError as exc:
                return report_error(prog, exc)
        return run
    return decorate
