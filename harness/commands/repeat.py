"""``harness run --repeat N`` / ``--seeds``: one run per seed, recorded as a group as each ends
(``harness.results.groups`` says what a group of them shows)."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.commands.execute import run_recipe
from harness.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
from harness.planning.recipe import load_recipe
from harness.report.plotting import draw_group_quietly
from harness.store.records import GroupMember, GroupRecord
from harness.store.runs import GroupDir, GroupStore, utc_now


@dataclass(frozen=True)
class GroupOutcome:
    group: GroupDir
    record: GroupRecord
    exit_code: int


def run_group(recipe_path: Path, sets: list[str], seeds: list[int], *, results_dir: Path, executor: str,
              quiet: bool = False, skip_data_check: bool = False) -> GroupOutcome:
    """Run one member per seed, recording each as it starts and ends. Every member's recipe is
    validated before the group folder exists, so bad input leaves nothing behind."""
    loaded = [load_recipe(recipe_path, [*sets, f"train.seed={seed}"], for_run=True) for seed in seeds]
    group = GroupStore(results_dir).create(loaded[0].recipe.name)
    with group.lock():  # held while the group runs: nobody holding it means its harness is gone
        return _run_members(group, loaded, recipe_path, sets, seeds, results_dir=results_dir, executor=executor,
                            quiet=quiet, skip_data_check=skip_data_check)


def _run_members(group: GroupDir, loaded: list, recipe_path: Path, sets: list[str], seeds: list[int], *,
                 results_dir: Path, executor: str, quiet: bool, skip_data_check: bool) -> GroupOutcome:
    record = GroupRecord(group_id=group.group_id, recipe=loaded[0].recipe.name, recipe_path=str(loaded[0].path),
                         sets=list(sets), seeds=seeds, members=[GroupMember(seed=s) for s in seeds], created=utc_now())
    group.write(record)
    print(f"harness: group {group.group_id}: {len(seeds)} run(s), seeds {','.join(map(str, seeds))}", file=sys.stderr)
    for index, member in enumerate(record.members):

        def started(run, member=member) -> None:
            member.run_id, member.state = run.run_id, "running"
            group.write(record)

        try:
            outcome = run_recipe(loaded[index], results_dir=results_dir, executor=executor, quiet=quiet,
                                 skip_data_check=skip_data_check, on_created=started)
        except KeyboardInterrupt:  # before the member's folder existed
            member.state, member.exit_code = "interrupted", EXIT_INTERRUPTED
            break
        member.run_id, member.state, member.exit_code = outcome.run.run_id, outcome.state, outcome.exit_code
        member.reason = outcome.run.status().reason
        group.write(record)
        print(f"harness: group {group.group_id}: member {index + 1}/{len(seeds)} (seed {member.seed}) "
              f"{outcome.state}", file=sys.stderr)
        if outcome.state == "interrupted":
            break
    interrupted = any(m.state == "interrupted" for m in record.members)
    record.state = "interrupted" if interrupted else "finished"
    group.write(record)
    problem = draw_group_quietly(results_dir, group)  # the group is recorded here, so drawn here
    if problem:
        print(f"harness: group {group.group_id}: {problem}", file=sys.stderr)
    if interrupted:
        return GroupOutcome(group, record, EXIT_INTERRUPTED)
    failed = any(m.state != "succeeded" for m in record.members)
    return GroupOutcome(group, record, EXIT_RUN_FAILED if failed else EXIT_OK)
