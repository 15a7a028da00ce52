"""``harness report``: rebuild results/README.md from the stored runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import DEFAULT_RESULTS
from harness.planning.shipped import RECIPES_DIR


def register(subparsers) -> argparse.ArgumentParser:
    report = subparsers.add_parser("report", help="rebuild results/README.md from the stored runs")
    report.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    report.add_argument("--recipes", type=Path, default=RECIPES_DIR,
                        help="where the reference recipes live (default: the shipped recipes/)")
    report.add_argument("--print", action="store_true", help="also print the report")
    report.set_defaults(func=cmd_report)
    return report


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.readme import write_report

    path, report = write_report(args.results, args.recipes)
    if args.print:
        print(path.read_text())
    print(f"harness: report of {len(report.rows)} run(s) written to {path}", file=sys.stderr)
    return 0
