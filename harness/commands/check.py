"""``harness check RECIPE``: build the recipe's real config and train it two iterations on the CPU."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import positive_int
from harness.commands.checking import QUICK_BATCH, QUICK_CROP


def batch_size(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        # PSPNet's 1x1 pyramid-pooling branch has BN over one value per channel with one image.
        raise argparse.ArgumentTypeError("must be >= 2 (BN in PSPNet's 1x1 pyramid pool needs 2 images)")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="prove on the CPU that a recipe's real config builds and trains (2 iterations + 1 val batch)",
        description="Builds the worker's config exactly as `harness run` would (the recipe's real model), "
                    "substitutes only what the CPU cannot do (SyncBN -> BN, AMP -> fp32, hccl/nccl -> gloo, "
                    "ranks -> 1 process), trains two iterations, validates one batch, and prints a summary. "
                    f"By default at a {QUICK_CROP}x{QUICK_CROP} crop and batch {QUICK_BATCH} (every resize scale shrunk "
                    "alike): seconds and under 3 GB; --full-size trains at the recipe's crop and batch. "
                    "Uses the recipe's dataset when it is on this machine, else a small synthetic stand-in. "
                    "Exit 2 (one line) when an override names a key the config lacks, the crop is larger "
                    "than every image, or the config fails to build or to produce a batch.")
    p.add_argument("recipe", type=Path, help="a recipe YAML file, e.g. recipes/full_8p.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (dotted, YAML value); repeatable")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full-size", action="store_true",
                      help="train at the recipe's own crop and batch (R50-D8 512x512 batch 16: ~21 GB, minutes); "
                           "first prints the memory it will need")
    size.add_argument("--crop", type=positive_int, metavar="N",
                      help=f"square crop N (resize scales shrink alike); the model stays (default: {QUICK_CROP}, "
                           "or the recipe's when smaller)")
    p.add_argument("--batch", type=batch_size, metavar="B",
                   help=f"images per iteration, >= 2 (default: {QUICK_BATCH}, or the recipe's when smaller; "
                        "with --full-size the recipe's)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.commands.checking import check_recipe, render
    from harness.planning.recipe import load_recipe

    def announce(line: str) -> None:
        print(f"harness check: {line}", file=sys.stderr, flush=True)

    report = check_recipe(load_recipe(args.recipe, args.sets), crop=args.crop, batch=args.batch,
                          full_size=args.full_size, announce=announce)
    render(report)
    print(f"harness check: {report.recipe} passed in {report.seconds:.1f} s", file=sys.stderr)
    return 0
