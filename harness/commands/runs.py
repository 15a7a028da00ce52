"""``harness runs``: list the stored runs with their state."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.commands.arguments import DEFAULT_RESULTS


def register(subparsers) -> argparse.ArgumentParser:
    runs = subparsers.add_parser("runs", help="list the stored runs with their state")
    runs.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=cmd_runs)
    return runs


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
