"""`harness compose [--recipes DIR]`: print compose.yaml, generated from the recipes' plans
(redirect it: `harness compose > compose.yaml`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import BadInput
from harness.planning.shipped import RECIPES_DIR

DEFAULT_RECIPES = RECIPES_DIR


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compose", help="print compose.yaml generated from the recipes' plans (`harness compose > compose.yaml`)")
    parser.add_argument("--recipes", type=Path, default=DEFAULT_RECIPES,
                        help="folder holding the services' recipes (default: the project's recipes/)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from harness.executors.compose import SERVICES, render

    for service in SERVICES:
        if not (args.recipes / service.recipe).is_file():
            raise BadInput(f"{args.recipes / service.recipe}: no such recipe (compose service {service.name})")
    print(render(args.recipes), end="")
    return 0
