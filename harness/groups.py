"""Repeats of one recipe that differ only in ``train.seed`` (``harness run --repeat N``), and what
a group of them says: n, mean +- sd, min-max of each number, and a verdict.

A group is an ordinary run folder per member plus ``results/groups/<id>/group.json`` (written
through ``harness.runs.GroupStore``) naming the members and how each ended. A member that fails
is recorded and the group goes on; Ctrl-C stops the group after recording the member it hit.

Judging (stated in the report's definitions): accuracy by the *mean* of the finished members
against the reference with ``accuracy_points`` widened by the recipe's
``tolerance.seed_spread_points`` (a fixed, published seed spread rather than the group's own sd:
with three members the sample sd is itself too uncertain to set a bar, and a group that happens
to agree closely would be judged more strictly than one that scatters); fps by the *median*
(one slow member, e.g. a cold cache, does not decide the speed).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED
from harness.recipe import METRICS, Reference, load_recipe
from harness.records import GroupMember, GroupRecord, RunResult
from harness.runs import GroupDir, GroupStore, RunStoreError, utc_now
from harness.stats import GroupStats, describe
from harness.verdict import Verdict, judge_accuracy, judge_speed

NUMBERS = ("fps", *METRICS)


def parse_seeds(text: str | None, repeat: int | None) -> list[int]:
    """``--seeds 0,1,2`` and/or ``--repeat N`` -> the seeds (default 0..N-1); bad input is one line."""
    if repeat is not None and repeat < 1:
        raise RunStoreError(f"--repeat {repeat}: expected a whole number >= 1")
    if text is None:
        return list(range(repeat or 1))
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise RunStoreError(f"--seeds {text!r}: expected whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise RunStoreError(f"--seeds {text!r}: expected distinct seeds, e.g. 0,1,2")
    if repeat is not None and repeat != len(seeds):
        raise RunStoreError(f"--repeat {repeat} with --seeds {text!r}: {len(seeds)} seeds given; give one or the other")
    return seeds


@dataclass(frozen=True)
class GroupOutcome:
    group: GroupDir
    record: GroupRecord
    exit_code: int


def run_group(recipe_path: Path, sets: list[str], seeds: list[int], *, results_dir: Path, executor: str,
              quiet: bool = False, skip_data_check: bool = False) -> GroupOutcome:
    """Run one member per seed, recording each as it ends. Every member's recipe is validated
    before the group folder exists, so bad input leaves nothing behind."""
    from harness.execute import run_recipe

    loaded = [load_recipe(recipe_path, [*sets, f"train.seed={seed}"], for_run=True) for seed in seeds]
    group = GroupStore(results_dir).create(loaded[0].recipe.name)
    record = GroupRecord(group_id=group.group_id, recipe=loaded[0].recipe.name, recipe_path=str(loaded[0].path),
                         sets=list(sets), seeds=seeds, members=[GroupMember(seed=s) for s in seeds], created=utc_now())
    group.write(record)
    print(f"harness: group {group.group_id}: {len(seeds)} run(s), seeds {','.join(map(str, seeds))}", file=sys.stderr)
    for index, member in enumerate(record.members):
        try:
            outcome = run_recipe(loaded[index], results_dir=results_dir, executor=executor, quiet=quiet,
                                 skip_data_check=skip_data_check)
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
    from harness.plotting import draw_group_quietly

    problem = draw_group_quietly(results_dir, group)  # the group is recorded here, so drawn here
    if problem:
        print(f"harness: group {group.group_id}: {problem}", file=sys.stderr)
    if interrupted:
        return GroupOutcome(group, record, EXIT_INTERRUPTED)
    failed = any(m.state != "succeeded" for m in record.members)
    return GroupOutcome(group, record, EXIT_RUN_FAILED if failed else EXIT_OK)


# ---------------------------------------------------------------------------------------------
# What a group says


@dataclass
class GroupSummary:
    group_id: str
    recipe: str
    reference: Reference | None
    members: list[GroupMember]
    results: dict[str, RunResult]  # run id -> result, the finished members only
    stats: dict[str, GroupStats] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return len(self.results)

    def completeness(self) -> str:
        """'3 of 3 finished', or '2 of 3 finished; judged on those (seed 1: failed: killed ...)'."""
        text = f"{self.finished} of {len(self.members)} finished"
        if self.finished == len(self.members):
            return text
        others = "; ".join(f"seed {m.seed}: {m.state}" + (f" ({m.reason})" if m.reason else "")
                           for m in self.members if m.run_id not in self.results)
        return f"{text}; judged on those ({others})"

    def to_dict(self) -> dict:
        return {
            "group_id": self.group_id, "recipe": self.recipe,
            "reference": self.reference.label if self.reference else None,
            "members": [m.model_dump() for m in self.members], "finished": self.finished,
            "completeness": self.completeness(),
            "stats": {name: s.to_dict() for name, s in self.stats.items()},
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def member_values(results: list[RunResult], name: str) -> list[float | None]:
    """fps, or the compared evaluation's metric, of each result."""
    if name == "fps":
        return [r.fps for r in results]
    return [getattr(r.compared_metrics(), name) for r in results]


def summarize(record: GroupRecord, results: dict[str, RunResult], reference: Reference | None) -> GroupSummary:
    """``results``: the members' results by run id; only succeeded members are counted."""
    kept = {m.run_id: results[m.run_id] for m in record.finished_members() if m.run_id in results}
    summary = GroupSummary(record.group_id, record.recipe, reference, record.members, kept)
    values = list(kept.values())
    summary.stats = {name: describe(member_values(values, name)) for name in NUMBERS}
    if reference is not None:
        summary.verdicts = judge_group(summary.stats, reference)
    return summary


def judge_group(stats: dict[str, GroupStats], reference: Reference) -> list[Verdict]:
    spread = reference.tolerance.seed_spread_points
    widened = reference.model_copy(update={"tolerance": reference.tolerance.model_copy(
        update={"accuracy_points": reference.tolerance.accuracy_points + spread})})
    speed = judge_speed(stats["fps"].median, reference)
    verdicts = [Verdict(speed.metric, speed.status, speed.measured, speed.reference,
                        f"median of {stats['fps'].n}: {speed.reason}")]
    for metric in METRICS:
        v = judge_accuracy(metric, stats[metric].mean, widened)
        reason = f"mean of {stats[metric].n}: {v.reason}, tolerance {reference.tolerance.accuracy_points:.2f} + seed spread {spread:.2f}"
        verdicts.append(Verdict(v.metric, v.status, v.measured, v.reference, reason))
    return verdicts
