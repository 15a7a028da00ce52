"""A group left 'running' by a harness that was killed (SIGKILL, a reboot) is repaired by the next
command that reads it (``harness report``, ``harness compare``): the members that were not recorded
as ended get their state from their run folders, and each repaired member is named on stderr.

A group is being run exactly while its harness holds the group's lock (``GroupDir.lock``); one that
says 'running' while the lock is free was left behind. A member whose run id was never recorded
(releases before the group recorded it at creation) is found among the runs of the group's recipe
created since the group, by its seed.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from harness.store.records import DamagedRecord, GroupMember, GroupRecord
from harness.store.runs import GroupDir, RunBusy, RunDir, RunStore

UNFINISHED = ("pending", "created", "running")


def repaired(group: GroupDir, results_dir: Path) -> GroupRecord:
    """The group's record, repaired and written back when its harness is gone (said on stderr)."""
    record = group.read()
    if record.state != "running":
        return record
    try:
        lock = group.lock()
    except RunBusy:
        return record  # its harness is alive: the record is being written as the members end
    with lock:
        record = group.read()  # as the gone harness last wrote it
        if record.state != "running":
            return record
        notes = [_repair_member(member, record, results_dir) for member in record.members if member.state in UNFINISHED]
        record.state = "interrupted"
        group.write(record)
    print(f"harness: group {group.group_id}: its harness stopped while running it (killed?); recorded "
          + ", ".join(notes), file=sys.stderr, flush=True)
    return record


def _repair_member(member: GroupMember, record: GroupRecord, results_dir: Path) -> str:
    run = RunStore(results_dir).runs_dir / member.run_id if member.run_id else _find_run(member.seed, record, results_dir)
    run = RunDir(run) if run is not None and Path(run).is_dir() else None
    if run is None:
        member.state, member.run_id = "pending", None
        member.reason = "never started: the group's harness stopped before it"
        return f"seed {member.seed} never started"
    member.run_id = run.run_id
    state = run.effective_state()
    if state in ("succeeded", "failed", "interrupted"):
        status = run.status()
        member.state, member.exit_code, member.reason = state, status.exit_code, status.reason
        return f"seed {member.seed} {state} (run {run.run_id})"
    member.state = "interrupted"
    member.reason = f"the group's harness was killed during this run (run {run.run_id} is {state}; --resume it)"
    return f"seed {member.seed} interrupted (run {run.run_id} is {state})"


def _find_run(seed: int, record: GroupRecord, results_dir: Path) -> Path | None:
    """The run of ``seed`` made for this group: the recipe's, created since the group, not another
    member's, its recipe.yaml's train.seed the member's."""
    claimed = {m.run_id for m in record.members if m.run_id}
    for run in RunStore(results_dir).all():
        if run.run_id in claimed:
            continue
        try:
            status = run.status()
            recorded = yaml.safe_load(run.recipe_file.read_text()) or {}
        except (DamagedRecord, OSError, yaml.YAMLError):
            continue
        seed_of_run = (recorded.get("train") or {}).get("seed", 0) if isinstance(recorded, dict) else None
        created = status.created
        if status.recipe == record.recipe and created and record.created and created >= record.created \
                and seed_of_run == seed:
            return run.path
    return None
