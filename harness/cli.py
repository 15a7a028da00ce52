"""The ``harness`` command line.

Exit codes (all commands):
  0    success
  1    the run itself failed (training error, killed, timeout): see its status.json and train.log;
       for `harness verify`: the bundle failed verification (each difference is printed)
  2    bad input: recipe, dataset, log file or arguments (one line on stderr says which and why)
  3    the environment is not ready: Docker engine unreachable, image missing or stale, devices
       absent, results folder not writable, the run is being run by another harness process
  130  interrupted (Ctrl-C / SIGTERM / SIGHUP): the run is marked 'interrupted', its logs are kept
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.core.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, BadInput, HarnessError, environment_problem, report_error
from harness.planning.shipped import RECIPES_DIR

DEFAULT_RESULTS = Path("results")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage stays under --help)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _recipe_arguments(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    parser.add_argument("recipe", type=Path, nargs="?" if optional else None,
                        help="a recipe YAML file, e.g. recipes/smoke_cpu.yaml")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe field (dotted, YAML value), e.g. --set train.iterations=20; repeatable",
    )
    from harness.executors import all_executors

    executors = all_executors()
    parser.add_argument(
        "--executor", default=None, metavar="NAME",  # an unknown name is one line of bad input (get_executor)
        help="where to run: " + "; ".join(f"{cls.name}: {_summary(cls)}" for cls in executors) + "; default: docker "
        "when the recipe names an image and --executor is not given, except for the one-node CPU recipes, which "
        "default to local",
    )


def _summary(cls) -> str:
    """An executor's first docstring line, for --help (argparse formats help with %)."""
    return (cls.__doc__ or "").strip().splitlines()[0].rstrip(".").replace("%", "%%")


def repeat_count(text: str) -> int:
    """--repeat N: ASCII digits, 1..1000 (harness.results.groups.MAX_REPEAT), refused by argparse in one line."""
    from harness.results.groups import MAX_REPEAT

    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: expected a whole number from 1 to {MAX_REPEAT}")
    return int(text)


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.commands.execute import plan_inputs
    from harness.executors.planned import describe_plan, planned
    from harness.executors import get_executor
    from harness.planning.recipe import load_recipe

    loaded = load_recipe(args.recipe, args.sets)
    executor = _chosen_executor(args, loaded)
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


def _chosen_executor(args: argparse.Namespace, loaded) -> str:
    from harness.executors import default_executor, get_executor

    executor = args.executor or default_executor(loaded.recipe)
    if get_executor(executor).requires_image and not loaded.recipe.image:  # an unknown name: exit 2
        raise BadInput(f"{loaded.path}: image: the {executor} executor needs an image; the recipe names none")
    return executor


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
        executor = _chosen_executor(args, loaded)
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
    _say(f"harness: run {outcome.run.run_id} {outcome.state}: {json.dumps(summary)}")
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
    executor = _chosen_executor(args, loaded)
    outcome = run_group(args.recipe, args.sets, seeds, results_dir=args.results, executor=executor,
                        quiet=args.quiet, skip_data_check=args.skip_data_check)
    states = ", ".join(f"seed {m.seed} {m.state}" for m in outcome.record.members)
    _say(f"harness: group {outcome.group.group_id} {outcome.record.state}: {states}")
    _write_report(args)
    return outcome.exit_code


def _write_report(args: argparse.Namespace) -> None:
    if args.no_report:
        return
    from harness.report.readme import write_report

    try:
        path, _ = write_report(args.results)
        _say(f"harness: report written to {path}")
    except OSError as exc:  # the run is recorded; a report that cannot be written must not undo that
        _say(f"harness: report not written: {exc}")


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


def _say(line: str) -> None:
    """A status line on stderr; a closed stderr (terminal gone) drops it, never fails the run."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _readable_result(run):
    from harness.store.records import DamagedRecord

    try:
        return run.result()
    except DamagedRecord:
        return None


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.readme import write_report

    path, report = write_report(args.results, args.recipes)
    if args.print:
        print(path.read_text())
    print(f"harness: report of {len(report.rows)} run(s) written to {path}", file=sys.stderr)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from harness.store.runs import RunStore

    listed = [_run_line(run) for run in RunStore(args.results).all()]
    if args.json:
        print(json.dumps([entry for entry, _ in listed], indent=2))
        return 0
    from harness.core.tables import print_table

    print_table(("run id", "state", "exit:>", "iter:>", "mIoU:>", "reason"), [cells for _, cells in listed])
    return 0


def _run_line(run) -> tuple[dict, tuple[str, ...]]:
    """One run as a JSON entry and a table row; a damaged run is one row saying what is damaged."""
    problem = run.damage()
    if problem is not None:
        entry = {"run_id": run.run_id, "state": "damaged", "reason": problem}
        return entry, (run.run_id, "damaged", "", "", "", problem)
    status, result = run.status(), run.result()
    state = run.effective_state()
    miou = result.final.mIoU if result and result.final else None
    iterations = result.iterations if result else None
    entry = {"run_id": run.run_id, **status.model_dump(mode="json"), "state": state, "recorded_state": status.state}
    cells = (run.run_id, state, "" if status.exit_code is None else str(status.exit_code),
             "" if iterations is None else str(iterations), f"{miou:.2f}" if miou is not None else "", status.reason or "")
    return entry, cells


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.store.records import json_schemas

    schemas = {**json_schemas(), **{m.__name__: m.model_json_schema() for m in published_models().values()}}
    names = [args.record] if args.record else sorted(schemas)
    unknown = [n for n in names if n not in schemas]
    if unknown:
        raise BadInput(f"schema: unknown record {unknown[0]!r}: expected one of {', '.join(sorted(schemas))}")
    if args.output is None:
        chosen = schemas[names[0]] if args.record else {n: schemas[n] for n in names}
        print(json.dumps(chosen, indent=2))
        return 0
    from harness.core.fileio import write_text_atomic

    for name in names:
        model = {**record_models(), **published_models()}[name]
        write_text_atomic(args.output / schema_file_name(model), json.dumps(schemas[name], indent=2) + "\n")
        print(args.output / schema_file_name(model))
    return 0


def record_models() -> dict:
    from harness.store.records import RECORDS

    return RECORDS


def published_models() -> dict:
    """JSON that commands print (not run-folder records) whose schema is published too."""
    from harness.report.compare import CompareReport

    return {"CompareReport": CompareReport}


def schema_file_name(model) -> str:
    """``status.json`` -> ``status.schema.json``: the schema of each run-folder file."""
    return model.FILE.removesuffix(".json") + ".schema.json"


def cmd_data_synth(args: argparse.Namespace) -> int:
    from harness.data.synth import SynthSpec, write_synthetic_voc

    try:
        spec = SynthSpec(seed=args.seed, n_train=args.n_train, n_aug=args.n_aug, n_val=args.n_val, sbd=args.sbd)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    devkit = write_synthetic_voc(args.root, spec)
    print(devkit)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description="Reproduce PSPNet (R50-D8) VOC2012+aug training tables with mmsegmentation on NPU, GPU or CPU.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    plan = sub.add_parser("plan", help="validate a recipe and print the resolved plan (runs nothing)")
    _recipe_arguments(plan)
    plan.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    plan.set_defaults(func=cmd_plan)

    run = sub.add_parser("run", help="run a recipe (or --resume a run), store it under results/runs/, update the report")
    _recipe_arguments(run, optional=True)
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

    report = sub.add_parser("report", help="rebuild results/README.md from the stored runs")
    report.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    report.add_argument("--recipes", type=Path, default=RECIPES_DIR,
                        help="where the reference recipes live (default: the shipped recipes/)")
    report.add_argument("--print", action="store_true", help="also print the report")
    report.set_defaults(func=cmd_report)

    runs = sub.add_parser("runs", help="list the stored runs with their state")
    runs.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)

    schema = sub.add_parser("schema", help="print or write the JSON schemas of the run-folder records (status.json, ...) and of compare --json")
    schema.add_argument("record", nargs="?", help="one record model, e.g. RunStatus or RunResult (default: all)")
    schema.add_argument("-o", "--output", type=Path, help="write <file>.schema.json files into this folder instead")
    schema.set_defaults(func=cmd_schema)

    data = sub.add_parser("data", help="datasets: synthesise, prepare, check")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", parser_class=_Parser)
    data_sub.required = True
    synth = data_sub.add_parser("synth", help="write the deterministic synthetic VOC-format dataset")
    synth.add_argument("--root", type=Path, required=True, help="folder to write VOCdevkit/ into")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--n-train", type=int, default=64)
    synth.add_argument("--n-aug", type=int, default=64)
    synth.add_argument("--n-val", type=int, default=24)
    synth.add_argument("--sbd", action="store_true",
                       help="also write the raw SBD release (VOCaug/dataset/cls/*.mat, train.txt, val.txt) for 'data prepare'")
    synth.set_defaults(func=cmd_data_synth)
    _register_optional(sub, data_sub)
    return parser


def _register_optional(sub, data_sub) -> None:
    """Commands that live in their own modules (``harness/commands/``)."""
    from harness.commands import COMMANDS, DATA_COMMANDS

    for register in COMMANDS:
        register(sub)
    for register in DATA_COMMANDS:
        register(data_sub)


def main(argv: list[str] | None = None) -> int:
    """The one place where errors become exit codes: every HarnessError carries its own."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as exc:
        return report_error("harness", exc)
    except KeyboardInterrupt:
        _say("harness: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `harness runs | head -1`: the reader left; what it did not read is not an error.
        _drop_stdout()
        return 0
    except OSError as exc:
        problem = environment_problem(exc)
        if problem is None:
            raise
        return report_error("harness", problem)
    finally:
        if argv is None:  # this process's own command line, about to exit
            _ignore_late_interrupts()
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            _drop_stdout()


def _ignore_late_interrupts() -> None:
    """The run is recorded and its exit code chosen: a Ctrl-C pressed again now must not kill the
    interpreter while it shuts down (Python restores the default SIGINT action there), which
    turned exit 130 into death by SIGINT when Ctrl-C was pressed over and over."""
    import signal

    execute = sys.modules.get("harness.commands.execute")  # only a command that ran something imported it
    if execute is not None and execute.interrupt_handlers_installed():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)


def _drop_stdout() -> None:
    # Python would report the failed flush of a closed pipe at exit; point stdout at /dev/null.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
