"""``harness run RECIPE`` / ``--resume RUN_ID`` / ``--repeat N``: run, store, report; each
executor's declared options are this command's flags."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.arguments import DEFAULT_RESULTS, recipe_arguments, repeat_count, say
from harness.commands.plan import chosen_executor
from harness.core.errors import BadInput


def register(subparsers) -> argparse.ArgumentParser:
    run = subparsers.add_parser("run", help="run a recipe (or --resume a run), store it under results/runs/, update the report")
    recipe_arguments(run, optional=True)
    run.add_argument("--resume", metavar="RUN_ID", help="continue a failed or interrupted run from its last checkpoint")
    run.add_argument("--force", action="store_true",
                     help="with --resume: also continue a run that already succeeded (a run whose harness is still "
                          "alive, i.e. holds the run's lock, is never resumed)")
    run.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    run.add_argument("--quiet", action="store_true", help="do not echo the training log, only progress lines")
    run.add_argument("--skip-data-check", action="store_true",
                     help="run even if the dataset fails `harness data check` (recorded with the run)")
    run.add_argument("--check", action="store_true",
                     help="first run `harness check RECIPE --crop 128 --batch 2` (real model, on the CPU); stop if it fails")
    run.add_argument("--no-report", action="store_true", help="do not rewrite results/README.md afterwards")
    run.add_argument("--repeat", type=repeat_count, metavar="N",
                     help="run a group: N runs differing only in train.seed (seeds 0..N-1), one run folder each, "
                          "plus results/groups/<group-id>/group.json; a failed member is recorded and the group goes on; "
                          "N at most 1000")
    run.add_argument("--seeds", metavar="S,S,...",
                     help="the group's seeds, e.g. 0,1,2 (implies --repeat); each from 0 to 4294967295")
    _executor_option_groups(run)
    run.set_defaults(func=cmd_run)
    return run


def cmd_run(args: argparse.Namespace) -> int:
    from harness.commands.execute import install_interrupt_handlers, resume_run, run_recipe
    from harness.executors import all_executors, get_executor
    from harness.planning.recipe import load_recipe

    install_interrupt_handlers()
    if args.force and not args.resume:
        raise BadInput("--force goes with --resume RUN_ID")
    if args.repeat is not None or args.seeds is not None:
        return _run_group(args)
    if args.resume:
        if args.recipe or args.sets or args.executor or _given_options(args):
            raise BadInput("--resume RUN_ID takes no recipe, --set, --executor or executor options: the run continues "
                              "as it was started")
        outcome = resume_run(args.resume, results_dir=args.results, quiet=args.quiet, force=args.force)
    else:
        if args.recipe is None:
            raise BadInput("run: give a RECIPE file, or --resume RUN_ID")
        loaded = load_recipe(args.recipe, args.sets, for_run=True)
        executor = chosen_executor(args, loaded)
        options = _executor_options(args, executor, loaded)
        if loaded.recipe.device.nodes > 1 and not get_executor(executor).multi_node:
            # An executor that starts one node: node 0 alone would wait for the others forever.
            several = " or ".join(f"--executor {cls.name}" for cls in all_executors() if cls.multi_node)
            raise BadInput(
                f"{loaded.path}: device.nodes: the {executor} executor runs one node; for {loaded.recipe.device.nodes} "
                f"nodes use {several}, or submit with `harness k8s` (see `harness plan` for every node's launch)"
            )
        if args.check:
            from harness.commands.checking import check_recipe

            report = check_recipe(loaded)  # the quick default size
            print(f"harness: check passed ({report.seconds:.0f} s on the CPU, crop {report.crop[1]}, batch {report.batch})",
                  file=sys.stderr)
        outcome = run_recipe(
            loaded, results_dir=args.results, executor=executor, quiet=args.quiet, skip_data_check=args.skip_data_check,
            executor_options=options,
        )
    result = _readable_result(outcome.run)
    summary = result.model_dump(include={"fps", "final", "best", "iterations"}) if result else {}
    say(f"harness: run {outcome.run.run_id} {outcome.state}: {json.dumps(summary)}")
    _write_report(args)
    return outcome.exit_code


def _run_group(args: argparse.Namespace) -> int:
    """``--repeat N`` / ``--seeds``: one run per seed plus a group record (harness.results.groups)."""
    from harness.results.groups import parse_seeds
    from harness.commands.repeat import run_group
    from harness.planning.recipe import load_recipe

    if args.resume or args.check:
        raise BadInput("--repeat/--seeds go with a RECIPE, not with --resume or --check")
    if _given_options(args):
        raise BadInput(f"--repeat/--seeds do not take {_flags(_given_options(args))} yet: "
                          "submit each seed with --set train.seed=S instead")
    if args.recipe is None:
        raise BadInput("run --repeat: give a RECIPE file")
    seeds = parse_seeds(args.seeds, args.repeat)
    loaded = load_recipe(args.recipe, args.sets, for_run=True)
    executor = chosen_executor(args, loaded)
    outcome = run_group(args.recipe, args.sets, seeds, results_dir=args.results, executor=executor,
                        quiet=args.quiet, skip_data_check=args.skip_data_check)
    states = ", ".join(f"seed {m.seed} {m.state}" for m in outcome.record.members)
    say(f"harness: group {outcome.group.group_id} {outcome.record.state}: {states}")
    _write_report(args)
    return outcome.exit_code


def _write_report(args: argparse.Namespace) -> None:
    if args.no_report:
        return
    from harness.report.readme import write_report

    try:
        path, _ = write_report(args.results)
        say(f"harness: report written to {path}")
    except OSError as exc:  # the run is recorded; a report that cannot be written must not undo that
        say(f"harness: report not written: {exc}")


def _given_options(args: argparse.Namespace) -> dict[tuple[str, str], str]:
    """Every executor option given on the command line, by (executor, option name)."""
    from harness.executors import all_executors

    given = {(cls.name, option.name): getattr(args, _option_dest(cls, option), None)
             for cls in all_executors() for option in cls.run_options if option.flag}
    return {key: value for key, value in given.items() if value is not None}


def _option_dest(cls, option) -> str:
    return f"executor_option_{cls.name}_{option.name}"


def _flags(given: dict[tuple[str, str], str]) -> str:
    from harness.executors import get_executor

    flags = {option.name: option.flag for name, _ in given for option in get_executor(name).run_options}
    return ", ".join(flags[option] for _, option in given)


def _executor_options(args: argparse.Namespace, executor: str, loaded) -> dict[str, str]:
    """The chosen executor's constructor options (recorded in plan.json; --resume reuses them)."""
    from harness.executors import get_executor

    given = _given_options(args)
    foreign = {key: value for key, value in given.items() if key[0] != executor}
    if foreign:
        owners = " or ".join(sorted({f"--executor {name}" for name, _ in foreign}))
        raise BadInput(f"{_flags(foreign)} go with {owners}, not {executor}")
    cls = get_executor(executor)
    return cls.options_for({option: value for (_, option), value in given.items()}, loaded)


def _executor_option_groups(run: argparse.ArgumentParser) -> None:
    """Each executor's declared options as one group of `harness run --help`."""
    from harness.executors import all_executors

    for cls in all_executors():
        flagged = [option for option in cls.run_options if option.flag]
        if not flagged:
            continue
        group = run.add_argument_group(f"{cls.name} (--executor {cls.name})", cls.run_options_help or None)
        for option in flagged:
            group.add_argument(option.flag, dest=_option_dest(cls, option), metavar=option.metavar,
                               choices=option.choices, default=None, help=option.help)


def _readable_result(run):
    from harness.store.records import DamagedRecord

    try:
        return run.result()
    except DamagedRecord:
        return None
