"""MLCommons' compliance checker (``mlperf_logging.compliance_checker``) run in this process.

What ``python -m mlperf_logging.compliance_checker --usage training --ruleset 6.1.0 --werror
--config ABS.yaml --log_output LOG STREAM`` does, minus the command line: the same checker class,
the same parser and rule engine. Differences, each for a reason:

- several configs are checked on one parse of the stream (a ``check_file`` per config would
  parse it again: its parser is the slow part);
- every message is kept: the checker keeps only the last per key (a second failing rule of
  ``eval_accuracy`` hides the first), so ``put_message`` is extended to record them all;
- its log (the root logger, which it writes to) goes to a file of the caller's choosing for the
  duration of the call, not to this process's handlers or a ``compliance_checker.log`` in the
  working directory;
- its module-level queue of configs is emptied first, so that a run that stopped half-way cannot
  leave a config behind for the next.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The 6.x parser reads ``:::MLLOG {json}`` lines, the form mllog writes; the ruleset is ours.
USAGE, PARSER_RULESET = "training", "6.1.0"


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """The checker logs through the root logger: point it at ``path`` alone while it runs."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        handler.close()


def run_checker(stream: Path, configs: list[Path], log: Path) -> list[list[tuple[str | None, str]]]:
    """Per config, ``[(key or None, message)]``: every message the checker raised, warnings as
    errors. What ``check_file`` does (parse, check, log), with the stream parsed once for all
    configs: its parser is most of the time a long stream takes.

    ``stream`` must already have passed the harness's own parse (the checker raises, instead of
    reporting, on a line without ``key`` or with a ``time_ms`` that is not a number); each config
    must be an absolute path (the checker joins it onto its own folder).
    """
    from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

    class RecordingChecker(mlp_compliance.ComplianceChecker):
        def __init__(self) -> None:
            super().__init__(USAGE, PARSER_RULESET, quiet=False, werror=True)
            self.recorded: list[tuple[str | None, str]] = []

        def put_message(self, msg, key=None):
            super().put_message(msg, key)
            self.recorded.append((key, msg))

    for config in configs:
        if not config.is_absolute():
            raise ValueError(f"{config}: the compliance checker needs an absolute config path")
    checker = RecordingChecker()
    mlp_compliance.enqueued_configs.clear()
    per_config = []
    with _log_to(log):
        loglines, errors = mlp_parser.parse_file(str(stream), ruleset=PARSER_RULESET)
        if errors:
            checker.put_message("Log lines had parsing errors.")
        start = 0  # a parse error counts against the first config
        for config in configs:
            checker.check_loglines(loglines, str(config))
            per_config.append(checker.recorded[start:])
            start = len(checker.recorded)
        checker.log_messages()
    return per_config
