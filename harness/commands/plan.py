"""``harness plan RECIPE``: validate a recipe and print the plan an executor would run (runs nothing)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands.arguments import recipe_arguments
from harness.core.errors import BadInput


def register(subparsers) -> argparse.ArgumentParser:
    plan = subparsers.add_parser("plan", help="validate a recipe and print the resolved plan (runs nothing)")
    recipe_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    plan.set_defaults(func=cmd_plan)
    return plan


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.commands.execute import plan_inputs
    from harness.executors.planned import describe_plan, planned
    from harness.executors import get_executor
    from harness.planning.recipe import load_recipe

    loaded = load_recipe(args.recipe, args.sets)
    executor = chosen_executor(args, loaded)
    dataset = loaded.recipe.dataset
    dataset_dir = loaded.dataset_root() if dataset.root else Path("<synthetic cache>")
    inputs = plan_inputs(loaded, Path("results/runs/<run-id>").resolve(), dataset_dir, sample_load=True)
    plan = planned(loaded, inputs, get_executor(executor)())
    described = {"recipe": str(loaded.path), "dataset": str(dataset_dir), **describe_plan(plan)}
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(described, sort_keys=False, default_flow_style=None, width=120), end="")
    return 0


def chosen_executor(args: argparse.Namespace, loaded) -> str:
    from harness.executors import default_executor, get_executor

    executor = args.executor or default_executor(loaded.recipe)
    if get_executor(executor).requires_image and not loaded.recipe.image:  # an unknown name: exit 2
        raise BadInput(f"{loaded.path}: image: the {executor} executor needs an image; the recipe names none")
    return executor
