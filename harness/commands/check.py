"""``harness check RECIPE``: build the recipe's real config and train it two iterations on the CPU."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.arguments import positive_int


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
                    "Uses the recipe's dataset when it is on this machine, else a small synthetic stand-in. "
                    "Exit 2 (one line) when an override names a key the config lacks, the crop is larger "
                    "than every image, or the config fails to build or to produce a batch.")
    p.add_argument("recipe", type=Path, help="a recipe YAML file, e.g. recipes/full_8p.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field (dotted, YAML value); repeatable")
    p.add_argument("--crop", type=positive_int, metavar="N",
                   help="square crop N (resize scales shrink alike) for time; the model stays (default: the recipe's)")
    p.add_argument("--batch", type=batch_size, metavar="B", help="images per iteration, >= 2 (default: the recipe's)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.checking import check_recipe, render
    from harness.recipe import load_recipe

    report = check_recipe(load_recipe(args.recipe, args.sets), crop=args.crop, batch=args.batch)
    render(report)
    print(f"harness check: {report.recipe} passed in {report.seconds:.1f} s", file=sys.stderr)
    return 0
