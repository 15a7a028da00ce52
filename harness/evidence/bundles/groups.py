"""The group record of a group bundle (``harness bundle GROUP``), checked against the bundled runs
by ``harness verify`` and imported with them by ``harness ingest``.

A group record claims: these seeds of this recipe (with these ``--set`` overrides) were run, and
these members finished. Its checksum can be rewritten, so each claim is checked against the runs:
the finished members are exactly the bundled runs, each run is of the group's recipe, with the
member's seed, and holds every override the group names.
"""
from __future__ import annotations

import copy
from pathlib import Path

from harness.core.dotted import set_dotted
from harness.core.errors import BadInput
from harness.core.untrusted import UntrustedInput, read_bounded, short
from harness.planning.recipe import parse_set_arguments
from harness.store.records import BundleRecord, DamagedRecord, GroupRecord, parse_record
from harness.store.runs import GROUP_ID_PATTERN, RunDir

GROUPS_PREFIX = "groups"
MAX_GROUP_BYTES = 16 << 20


def group_record_path(group_id: str) -> str:
    return f"{GROUPS_PREFIX}/{group_id}/{GroupRecord.FILE}"


def read_group(root: Path, record: BundleRecord) -> GroupRecord:
    """The bundled group record (``DamagedRecord`` / ``UntrustedInput`` when unreadable)."""
    name = group_record_path(record.group or "")
    text = read_bounded(root / name, MAX_GROUP_BYTES, what=name).decode("utf-8", errors="replace")
    return parse_record(GroupRecord, text, where=name)  # type: ignore[return-value]


def _run_claims(run: RunDir, group: GroupRecord, seed: int, where: str, record_name: str) -> list[str]:
    from harness.planning.stored_recipe import recipe_data_of, recipe_of

    try:
        recipe = recipe_of(run)
        data = recipe_data_of(run)
    except DamagedRecord as exc:
        return [" ".join(str(exc).replace(str(run.path), where).split())]
    lines = []
    if recipe.name != group.recipe:
        lines.append(f"{where}: recipe {recipe.name!r}, the group record {record_name} says {short(group.recipe)}")
    if recipe.train.seed != seed:
        lines.append(f"{where}: train.seed {recipe.train.seed}, the group record {record_name} says seed {seed}")
    try:
        assignments = parse_set_arguments(group.sets)
    except BadInput as exc:
        return [*lines, f"{record_name}: sets: {' '.join(str(exc).split())}"]
    for key, value in assignments:
        applied = copy.deepcopy(data)
        try:
            set_dotted(applied, key, value)
        except (BadInput, KeyError, TypeError, ValueError):
            applied = None
        if applied != data:  # the run's recipe does not hold what the override would have set
            lines.append(f"{where}: {key[:80]} differs from the group record {record_name}'s --set {short(f'{key}={value}')}")
    return lines


def check_group(root: Path, record: BundleRecord, present: set[str]) -> list[str]:
    """The differences between a bundle's group record and its runs (none for a run bundle)."""
    from harness.evidence.bundles.pack import RUNS_PREFIX

    group_files = sorted(n for n in present if n.startswith(f"{GROUPS_PREFIX}/"))
    if record.group is None:
        return [f"{short(name)}: a group record in a bundle that names no group" for name in group_files]
    name = group_record_path(record.group)
    if not GROUP_ID_PATTERN.match(record.group):
        return [f"{BundleRecord.FILE}: group: {short(record.group)} is not a group id"]
    if name not in present or name not in record.extra_records:
        return [f"{BundleRecord.FILE}: group {record.group}: its record {name} is not bundled"]
    try:
        group = read_group(root, record)
    except (DamagedRecord, UntrustedInput) as exc:
        return [" ".join(str(exc).split())]
    lines = []
    if group.group_id != record.group:
        lines.append(f"{name}: group_id {short(group.group_id)}, {BundleRecord.FILE} says {record.group!r}")
    if [m.seed for m in group.members] != group.seeds or len(set(group.seeds)) != len(group.seeds):
        lines.append(f"{name}: seeds {group.seeds} are not its members' seeds {[m.seed for m in group.members]}")
    finished = {m.run_id: m for m in group.finished_members()}
    for run_id in sorted(set(record.runs) - set(finished)):
        lines.append(f"{name}: run {short(run_id)} is bundled but not a finished member of the group")
    for run_id in sorted(set(finished) - set(record.runs)):
        lines.append(f"{name}: member {short(run_id)} is said to have finished but is not bundled")
    for run_id in sorted(set(finished) & set(record.runs)):
        where = f"{RUNS_PREFIX}/{run_id}"
        if (root / where).is_dir():
            lines += _run_claims(RunDir(root / where), group, finished[run_id].seed, f"{where}/recipe.yaml", name)
    return lines
