"""Repeats of one recipe that differ only in ``train.seed`` (``harness run --repeat N``), and what
a group of them says: n, mean +- sd, min-max of each number, and a verdict.

A group is an ordinary run folder per member plus ``results/groups/<id>/group.json`` (written
through ``harness.store.runs.GroupStore``) naming the members and how each ended. A member that fails
is recorded and the group goes on; Ctrl-C stops the group after recording the member it hit.

Judging (stated in the report's definitions): accuracy by the *mean* of the finished members
against the reference with ``accuracy_points`` widened by the recipe's
``tolerance.seed_spread_points`` (a fixed, published seed spread rather than the group's own sd:
with three members the sample sd is itself too uncertain to set a bar, and a group that happens
to agree closely would be judged more strictly than one that scatters); fps by the *median*
(one slow member, e.g. a cold cache, does not decide the speed).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.planning.recipe import MAX_SEED, METRICS, Reference
from harness.results.stats import GroupStats, describe
from harness.results.verdict import judge_accuracy, judge_speed
from harness.store.records import GroupMember, GroupRecord, RunResult, Verdict
from harness.store.runs import RunStoreError

NUMBERS = ("fps", *METRICS)
MAX_REPEAT = 1000  # runs in one group: far above any study, small enough to validate at once


def parse_seeds(text: str | None, repeat: int | None) -> list[int]:
    """``--seeds 0,1,2`` and/or ``--repeat N`` -> the seeds (default 0..N-1); bad input is one line.
    Both are bounded before anything else happens (``--repeat 100000`` once validated for minutes)."""
    if repeat is not None and not 1 <= repeat <= MAX_REPEAT:
        raise RunStoreError(f"--repeat {repeat}: expected a whole number from 1 to {MAX_REPEAT}")
    if text is None:
        return list(range(repeat or 1))
    parts = [part.strip() for part in text.split(",") if part.strip()]
    # ASCII digits only: int() also reads '٣' and '+3', which a recipe or a log would not.
    if len(parts) > MAX_REPEAT or not all(part.isascii() and part.isdigit() for part in parts) \
            or any(int(part) > MAX_SEED for part in parts):
        raise RunStoreError(f"--seeds {text[:80]!r}: expected at most {MAX_REPEAT} whole numbers from 0 to {MAX_SEED} "
                            "(ASCII digits) separated by commas, e.g. 0,1,2")
    seeds = [int(part) for part in parts]
    if not seeds or len(set(seeds)) != len(seeds):
        raise RunStoreError(f"--seeds {text!r}: expected distinct seeds, e.g. 0,1,2")
    if repeat is not None and repeat != len(seeds):
        raise RunStoreError(f"--repeat {repeat} with --seeds {text!r}: {len(seeds)} seeds given; give one or the other")
    return seeds


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
            "verdicts": [v.model_dump() for v in self.verdicts],
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
    verdicts = [speed.model_copy(update={"reason": f"median of {stats['fps'].n}: {speed.reason}"})]
    for metric in METRICS:
        v = judge_accuracy(metric, stats[metric].mean, widened)
        reason = f"mean of {stats[metric].n}: {v.reason}, tolerance {reference.tolerance.accuracy_points:.2f} + seed spread {spread:.2f}"
        verdicts.append(v.model_copy(update={"reason": reason}))
    return verdicts
