"""``harness events check PATH...``: a worker event stream (or every attempt's stream of a run)
checked by MLCommons' compliance checker against the harness's ruleset (``harness.results.logs.compliance``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.core.errors import EXIT_OK, EXIT_RUN_FAILED, BadInput
from harness.store.layout import WORK_DIR


def register(subparsers) -> None:
    p = subparsers.add_parser("events", help="the worker's event streams (events.mllog)")
    sub = p.add_subparsers(dest="events_command", metavar="EVENTS_COMMAND", parser_class=type(p))
    sub.required = True
    check = sub.add_parser(
        "check", help="check event streams with MLCommons' compliance checker against the harness's ruleset",
        description="Check a worker event stream (events.mllog) with mlperf_logging.compliance_checker, in this "
                    "process, warnings as errors, against the ruleset shipped with the harness "
                    "(harness/results/logs/compliance/events.yaml): run_start once and first, the run's settings before "
                    "the first training window, each evaluation's accuracy (0-100) with its iteration, each "
                    "window's time, run_stop once and last with its status, each value's type and range. A run "
                    "folder (or its work_dir) stands for every attempt's stream; only a stream that a later "
                    "attempt follows may end without run_stop. Prints PASS, or FAIL and one line per failure "
                    "naming the line, the key and the rule. Exit 0 on PASS, 1 on FAIL, 2 when a path holds no "
                    "event stream.")
    check.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                       help="an events.mllog, an mmengine timestamp folder holding one, a work_dir or a run folder")
    check.set_defaults(func=run_check)


def _check(path: Path) -> tuple[int, list[str]]:
    from harness.results.logs.compliance import check_run, check_stream
    from harness.store.event_stream import FILE_NAME

    if path.is_file() or path.is_symlink():
        return 1, check_stream(path)
    if not path.is_dir():
        raise BadInput(f"{path}: no such file or folder")
    if (path / FILE_NAME).exists():
        return 1, check_stream(path / FILE_NAME)
    work_dir = path / WORK_DIR if (path / WORK_DIR).is_dir() else path
    checked, failures = check_run(work_dir)
    if not checked:
        raise BadInput(f"{path}: holds no event stream ({FILE_NAME}, expected in work_dir/<timestamp>/)")
    return checked, failures


def run_check(args: argparse.Namespace) -> int:
    from harness.results.logs.compliance import RULESET

    outcomes = [(path, *_check(path)) for path in args.paths]  # every path readable before any verdict
    for path, checked, failures in outcomes:
        streams = f"{checked} stream{'s' * (checked != 1)}, ruleset harness/results/logs/compliance/{RULESET.name}"
        print(f"FAIL {path}: {len(failures)} failure(s) ({streams})" if failures else f"PASS {path} ({streams})")
        for line in failures:
            print(f"  {line}")
    sys.stdout.flush()
    return EXIT_RUN_FAILED if any(failures for _, _, failures in outcomes) else EXIT_OK
