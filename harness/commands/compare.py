"""``harness compare A B``: two runs, groups or reference labels side by side (``harness.report.compare``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.arguments import output_folder
from harness.results.stats import DEFAULT_ALPHA


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare", help="two runs, groups or reference labels side by side: deltas, noise, provenance and config diff",
        description="A and B are each a run id, a group id (harness run --repeat) or a reference label "
                    "(e.g. NPU-8p: every finished run whose recipe's reference.label is it). Prints each "
                    "number (fps, aAcc, mIoU, mAcc) with its delta B-A and whether it exceeds the noise "
                    "(Welch's t when both sides have >= 2 runs, else A's recipe tolerance), the provenance "
                    "that differs (image, packages, CANN/driver, dataset) and a diff of the resolved configs.")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    p.add_argument("--json", action="store_true",
                   help="print JSON (schema: docs/schemas/compare.schema.json) instead of markdown")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="also write compare.md and throughput.png (both sides on one plot) into DIR (made if missing; "
                        "a file there is refused, exit 2)")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write the throughput-over-time plot to FILE (PNG)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_sides, render_markdown, resolve_side, side_results
    from harness.core.fileio import write_text_atomic
    from harness.report.group_plots import plot_compare_throughput

    if args.output is not None:
        output_folder(args.output)
    a, b = resolve_side(args.results, args.a), resolve_side(args.results, args.b)
    report = compare_sides(a, b, DEFAULT_ALPHA)
    text = "\n".join(render_markdown(report))
    print(report.model_dump_json(indent=2) if args.json else text)
    plots = [p for p in (args.plot, args.output / "throughput.png" if args.output else None) if p]
    for path in plots:
        drawn = plot_compare_throughput([(a.name, side_results(a)), (b.name, side_results(b))], path)
        print(f"harness: {'throughput plot written to ' + str(path) if drawn else 'no throughput to plot'}",
              file=sys.stderr)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.output / "compare.md", text + "\n")
        write_text_atomic(args.output / "compare.json", json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    return 0
