"""``harness data prepare|check|fingerprint``: build the VOC2012+aug label set, validate a dataset,
print its fingerprint. Exit codes: 0 fine, 2 bad input (each problem on its own stderr line)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import positive_int
from harness.core.errors import EXIT_BAD_INPUT, EXIT_OK, BadInput, environment_problem, exits_with_code

LISTED = 20  # problems shown one per line before the rest are only counted


def _devkit_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voc", type=Path, default=None, metavar="VOCDEVKIT",
                        help="the VOCdevkit folder (holding VOC2012/); default: the data home, $PSPNET_DATA "
                             "or ./data/VOCdevkit")


def _registry_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", type=Path, default=None, metavar="FILE",
                        help="the archive registry (URLs, md5s, sizes; default: the shipped one); recorded in "
                             "the dataset manifest")


def _devkit(args: argparse.Namespace) -> Path:
    from harness.data.layout import data_home

    if args.voc is None:
        args.voc = data_home()
    return args.voc


def _workers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="processes (default: the cores this process may use)")


def register_synth(subparsers) -> argparse.ArgumentParser:
    synth = subparsers.add_parser("synth", help="write the deterministic synthetic VOC-format dataset")
    synth.add_argument("--root", type=Path, required=True, help="folder to write VOCdevkit/ into")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--n-train", type=int, default=64)
    synth.add_argument("--n-aug", type=int, default=64)
    synth.add_argument("--n-val", type=int, default=24)
    synth.add_argument("--sbd", action="store_true",
                       help="also write the raw SBD release (VOCaug/dataset/cls/*.mat, train.txt, val.txt) for 'data prepare'")
    synth.set_defaults(func=cmd_data_synth)
    return synth


def cmd_data_synth(args: argparse.Namespace) -> int:
    from harness.data.synth import SynthSpec, write_synthetic_voc

    try:
        spec = SynthSpec(seed=args.seed, n_train=args.n_train, n_aug=args.n_aug, n_val=args.n_val, sbd=args.sbd)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    devkit = write_synthetic_voc(args.root, spec)
    print(devkit)
    return 0


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
    p.add_argument("--archives", type=Path, nargs="+", default=None, metavar="PATH",
                   help="prepare straight from VOCtrainval_11-May-2012.tar and benchmark.tgz (files, or the "
                        "folder `data fetch` keeps them in), verified against the registry, without extracting "
                        "them first")
    _registry_argument(p)
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


@exits_with_code("harness data prepare")
def run_prepare(args: argparse.Namespace) -> int:
    from harness.data.layout import DataError
    from harness.data.prepare import prepare_dataset

    _devkit(args)
    try:
        if args.archives:
            if args.sbd is not None:
                raise DataError("--sbd and --archives: give one (SBD's folder, or the archives)")
            report = _prepare_from_archives(args)
        else:
            report = prepare_dataset(args.voc, args.sbd, workers=args.workers, force=args.force)
    except DataError as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:  # e.g. SegmentationClassAug not writable; a full disk is exit 3 as everywhere
        raise environment_problem(exc) or BadInput(f"{exc.filename or ''}: {exc.strerror or exc}") from None
    print(f"harness data prepare: {report.converted} converted, {report.skipped} already done, "
          f"{len(report.problems)} problem(s)", file=sys.stderr)
    if not report.ok:
        _list_problems("prepare", report.problems)
        raise BadInput("split lists not written; fix the files above and run again (finished PNGs are kept)")
    print("splits: " + ", ".join(f"{k} {v}" for k, v in report.splits.items()))
    if report.manifest:
        _say_manifest("prepare", args.voc, report.manifest)
    return EXIT_OK


def _prepare_from_archives(args: argparse.Namespace):
    from harness.data.fetch import archive_sources, verify_cached
    from harness.data.from_archives import find_archives, prepare_from_archives
    from harness.data.registry import load_registry

    registry = load_registry(args.registry)
    pair = find_archives(args.archives, {n: registry.archive(n).file for n in ("voc2012", "sbd")})
    for name, path in (("voc2012", pair.voc), ("sbd", pair.sbd)):
        verify_cached(registry.archive(name), path)
    return prepare_from_archives(args.voc, pair, workers=args.workers, force=args.force,
                                 sources=archive_sources(registry, {"voc2012": pair.voc, "sbd": pair.sbd}))


def run_check(args: argparse.Namespace) -> int:
    from harness.data.check import check_dataset

    _devkit(args)
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


@exits_with_code("harness data fingerprint")
def run_fingerprint(args: argparse.Namespace) -> int:
    from harness.data.layout import DataError
    from harness.data.manifest import dataset_fingerprint

    _devkit(args)
    try:
        print(dataset_fingerprint(args.voc))
    except DataError as exc:
        raise BadInput(str(exc)) from None
    return EXIT_OK


def register_fetch(subparsers) -> argparse.ArgumentParser:
    from harness.data.registry import ARCHIVE_NAMES

    p = subparsers.add_parser(
        "fetch", help="download VOC2012 trainval and SBD (verified, resumable); with --prepare, build the dataset",
        description="Downloads the registry's archives into the cache, each verified against its md5 before "
                    "anything uses it; a cut download resumes (HTTP range + If-Range). Sources are tried in "
                    "order: --mirror, then $PSPNET_MIRRORS (space-separated), then the registry's URLs; a mirror "
                    "is a folder holding the archives by name (http(s) URL, file:// URL or local path). First "
                    "prints what it will download and the disk needed. Exit 2: every source offered wrong "
                    "bytes; exit 3: no source reachable, or the disk is (or gets) full.")
    def archive_name(text: str) -> str:  # not choices=: argparse rejects an empty nargs="*" list with them
        if text not in ARCHIVE_NAMES:
            raise argparse.ArgumentTypeError(f"unknown archive {text!r}: expected one of {', '.join(ARCHIVE_NAMES)}")
        return text

    p.add_argument("archives", nargs="*", type=archive_name, metavar="ARCHIVE",
                   help=f"which: {', '.join(ARCHIVE_NAMES)} (default: both)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="where the archives go (default: downloads/ beside the data home)")
    p.add_argument("--mirror", action="append", default=[], metavar="URL|PATH",
                   help="a folder holding the archives by their file names; repeatable, tried first, in order")
    _registry_argument(p)
    p.add_argument("--prepare", action="store_true",
                   help="then prepare the dataset from the archives into --voc, check it and print its fingerprint")
    _devkit_argument(p)
    p.add_argument("--dry-run", action="store_true", help="print what would be downloaded and the disk needed; stop")
    _workers_argument(p)
    p.set_defaults(func=run_fetch)
    return p


@exits_with_code("harness data fetch")
def run_fetch(args: argparse.Namespace) -> int:
    from harness.data.fetch import archive_sources, check_space, describe, env_mirrors, fetch_archives, plan_fetch
    from harness.data.layout import download_cache
    from harness.data.registry import ARCHIVE_NAMES, load_registry

    registry = load_registry(args.registry)
    names = list(dict.fromkeys(args.archives)) or list(ARCHIVE_NAMES)
    if args.prepare and set(names) != set(ARCHIVE_NAMES):
        raise BadInput(f"--prepare needs both archives ({', '.join(ARCHIVE_NAMES)})")
    cache = (args.cache or download_cache()).absolute()
    devkit = _devkit(args).absolute() if args.prepare else None
    plan = plan_fetch(registry, names, cache, prepare=args.prepare)
    for line in describe(plan, registry, devkit):
        print(f"fetch: {line}", flush=True)
    if args.dry_run:
        return EXIT_OK
    check_space(plan)
    paths = fetch_archives(registry, names, cache, args.mirror + env_mirrors())
    if not args.prepare:
        return EXIT_OK
    return _prepare_and_check(args, devkit, paths, archive_sources(registry, paths))


def _prepare_and_check(args: argparse.Namespace, devkit: Path, paths: dict, sources: dict) -> int:
    from harness.data.check import check_dataset
    from harness.data.from_archives import ArchivePair, prepare_from_archives
    from harness.data.manifest import dataset_fingerprint

    report = prepare_from_archives(devkit, ArchivePair(paths["voc2012"], paths["sbd"]), workers=args.workers,
                                   sources=sources)
    if not report.ok:
        _list_problems("fetch", report.problems)
        return EXIT_BAD_INPUT
    check = check_dataset(devkit, quick=False, workers=args.workers, stream=sys.stderr)
    if not check.ok:
        _list_problems("fetch", check.problems)
        return EXIT_BAD_INPUT
    print(check.summary())
    print(f"dataset {devkit} fingerprint {dataset_fingerprint(devkit)}")
    return EXIT_OK


DATA_COMMANDS: tuple = (register_synth, register_fetch, register_prepare, register_check, register_fingerprint)


def register(subparsers) -> argparse.ArgumentParser:
    data = subparsers.add_parser("data", help="datasets: synthesise, prepare, check")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.required = True
    for register_command in DATA_COMMANDS:
        register_command(data_sub)
    return data
