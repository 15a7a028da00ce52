"""``harness data prepare|check|fingerprint``: build the VOC2012+aug label set, validate a dataset,
print its fingerprint. Exit codes: 0 fine, 2 bad input (each problem on its own stderr line)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import positive_int
from harness.errors import EXIT_BAD_INPUT, EXIT_OK

LISTED = 20  # problems shown one per line before the rest are only counted


def _devkit_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voc", type=Path, required=True, metavar="VOCDEVKIT",
                        help="the VOCdevkit folder (holding VOC2012/)")


def _workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="processes (default: the cores this process may use)")


def register_prepare(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare", help="convert SBD class masks to VOC2012/SegmentationClassAug and write trainaug/aug lists",
        description="Does what mmseg's tools/dataset_converters/voc_aug.py does (same PNG pixels, same split "
                    "ids), in parallel, resumably (finished PNGs are kept), reporting bad files one per line. "
                    "Then writes the dataset manifest.")
    _devkit_argument(p)
    p.add_argument("--sbd", type=Path, default=None, metavar="PATH",
                   help="SBD's dataset folder (holding cls/, train.txt, val.txt), or the folder holding it "
                        "(default: VOCDEVKIT/VOCaug/dataset)")
    _workers_argument(p)
    p.add_argument("--force", action="store_true", help="reconvert every .mat, even finished ones")
    p.set_defaults(func=run_prepare)
    return p


def register_check(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="validate a VOCdevkit folder (files, sizes, label values, split counts)",
        description="Validates layout and content file by file, then writes the dataset manifest. "
                    "--quick reads only file headers: it catches missing, truncated, wrong-mode and "
                    "wrong-size files but not label values outside 0..20/255.")
    _devkit_argument(p)
    p.add_argument("--expect", choices=("any", "real"), default="any",
                   help="'real': also require 1464 train, 1449 val, 10582 trainaug ids (default: any)")
    p.add_argument("--quick", action="store_true", help="headers only, no label decoding")
    p.add_argument("--no-manifest", action="store_true", help="do not write the manifest")
    _workers_argument(p)
    p.set_defaults(func=run_check)
    return p


def register_fingerprint(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fingerprint", help="print the dataset fingerprint (from the manifest, "
                                                  "recomputed when files changed)")
    _devkit_argument(p)
    p.set_defaults(func=run_fingerprint)
    return p


def _error(command: str, message: str) -> None:
    print(f"harness data {command}: error: {message}", file=sys.stderr)


def _list_problems(command: str, problems: list[str]) -> None:
    for message in problems[:LISTED]:
        _error(command, message)
    if len(problems) > LISTED:
        _error(command, f"... and {len(problems) - LISTED} more problem(s)")


def _say_manifest(command: str, devkit: Path, path: Path) -> None:
    where = "" if path.parent.resolve() == devkit.resolve() else " (the dataset folder is read-only)"
    print(f"harness data {command}: manifest written to {path}{where}", file=sys.stderr)


def run_prepare(args: argparse.Namespace) -> int:
    from harness.data.layout import DataError
    from harness.data.prepare import prepare_dataset

    try:
        report = prepare_dataset(args.voc, args.sbd, workers=args.workers, force=args.force)
    except DataError as exc:
        _error("prepare", str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:  # e.g. SegmentationClassAug not writable
        _error("prepare", f"{exc.filename or ''}: {exc.strerror or exc}")
        return EXIT_BAD_INPUT
    print(f"harness data prepare: {report.converted} converted, {report.skipped} already done, "
          f"{len(report.problems)} problem(s)", file=sys.stderr)
    if not report.ok:
        _list_problems("prepare", report.problems)
        _error("prepare", "split lists not written; fix the files above and run again (finished PNGs are kept)")
        return EXIT_BAD_INPUT
    print("splits: " + ", ".join(f"{k} {v}" for k, v in report.splits.items()))
    if report.manifest:
        _say_manifest("prepare", args.voc, report.manifest)
    return EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    from harness.data.check import check_dataset

    report = check_dataset(args.voc, expect=args.expect, quick=args.quick, workers=args.workers,
                           stream=sys.stderr)
    if not report.ok:
        _list_problems("check", report.problems)
        print(report.summary())
        return EXIT_BAD_INPUT
    print(report.summary())
    if not args.no_manifest:
        from harness.data.manifest import write_manifest

        _say_manifest("check", args.voc, write_manifest(args.voc))
    return EXIT_OK


def run_fingerprint(args: argparse.Namespace) -> int:
    from harness.data.layout import DataError
    from harness.data.manifest import dataset_fingerprint

    try:
        print(dataset_fingerprint(args.voc))
    except DataError as exc:
        _error("fingerprint", str(exc))
        return EXIT_BAD_INPUT
    return EXIT_OK


DATA_COMMANDS: tuple = (register_prepare, register_check, register_fingerprint)
