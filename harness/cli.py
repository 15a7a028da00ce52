"""The ``harness`` command line.

Exit codes (all commands):
  0    success
  1    the run itself failed (training error, killed, timeout): see its status.json and train.log;
       for `harness verify`: the bundle failed verification (each difference is printed)
  2    bad input: recipe, dataset, log file or arguments (one line on stderr says which and why)
  3    the environment is not ready: Docker engine unreachable, image missing or stale, devices
       absent, results folder not writable, the run is being run by another harness process
  130  interrupted (Ctrl-C / SIGTERM / SIGHUP): the run is marked 'interrupted', its logs are kept
"""
from __future__ import annotations

import argparse
import os
import sys

from harness.commands.arguments import say
from harness.core.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, HarnessError, environment_problem, report_error


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage stays under --help)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from harness.commands import COMMANDS

    parser = _Parser(
        prog="harness",
        description="Reproduce PSPNet (R50-D8) VOC2012+aug training tables with mmsegmentation on NPU, GPU or CPU.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The one place where errors become exit codes: every HarnessError carries its own."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        return report_error("harness", exc)
    except KeyboardInterrupt:
        say("harness: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `harness runs | head -1`: the reader left; what it did not read is not an error.
        _drop_stdout()
        return 0
    except OSError as exc:
        problem = environment_problem(exc)
        if problem is None:
            raise
        return report_error("harness", problem)
    finally:
        if argv is None:  # this process's own command line, about to exit
            _ignore_late_interrupts()
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            _drop_stdout()


def _ignore_late_interrupts() -> None:
    """The run is recorded and its exit code chosen: a Ctrl-C pressed again now must not kill the
    interpreter while it shuts down (Python restores the default SIGINT action there), which
    turned exit 130 into death by SIGINT when Ctrl-C was pressed over and over."""
    import signal

    execute = sys.modules.get("harness.commands.execute")  # only a command that ran something imported it
    if execute is not None and execute.interrupt_handlers_installed():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)


def _drop_stdout() -> None:
    # Python would report the failed flush of a closed pipe at exit; point stdout at /dev/null.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
