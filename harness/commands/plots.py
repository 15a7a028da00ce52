"""``harness plots ID... | --missing``: draw the plots of stored runs and groups that have none
(run folders stored by an older harness, or written by hand). ``run`` and ``ingest`` draw the
plots of what they record; ``report`` never draws, it names what is missing."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.store.runs import GROUP_ID_PATTERN


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plots", help="draw the plots of stored runs or groups that have none (the report never draws)",
        description="Draws loss, mIoU and throughput plots of each named run (and loss and mIoU of each "
                    "named group of repeats) from its stored result, several runs in parallel. `harness "
                    "run` and `harness ingest` draw them when they record a run; this is for run folders "
                    "stored without them, which `harness report` lists as missing.")
    p.add_argument("ids", nargs="*", metavar="ID", help="a run id or a group id (g...)")
    p.add_argument("--missing", action="store_true", help="every stored run and group whose plots are missing")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from harness.report.plotting import draw_group, draw_runs
    from harness.store.runs import GroupStore, RunStore, RunStoreError

    if not args.ids and not args.missing:
        raise RunStoreError("harness plots: name run or group ids, or give --missing")
    runs, groups = RunStore(args.results), GroupStore(args.results)
    # Every id is looked up before anything is drawn: a wrong id draws nothing.
    named_runs = [runs.get(i) for i in args.ids if not GROUP_ID_PATTERN.match(i)]
    named_groups = [groups.get(i) for i in args.ids if GROUP_ID_PATTERN.match(i)]
    if args.missing:
        from harness.report.readme import collect, runs_without_plots

        report = collect(args.results)
        named_runs += [row.run for row in runs_without_plots(report)]
        named_groups += [groups.get(group_id) for group_id in sorted(report.groups_without_plots)]
    for run_id, paths in draw_runs(named_runs).items():
        print(f"{run_id}: {len(paths)} plot(s)")
    for group in named_groups:
        print(f"{group.group_id}: {len(draw_group(args.results, group))} plot(s)")
    return 0
