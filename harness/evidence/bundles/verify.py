"""``harness verify BUNDLE``: check a bundle on any machine, without the run store it came from.

1. bounded, safe extraction into a scratch folder (``harness.core.untrusted.extract_archive`` into
   ``harness.core.scratch``: removed on exit, on SIGTERM/SIGHUP, and by the next verify or ingest
   after a SIGKILL; links, special files, ``..``, huge headers -> one line, exit 2);
2. ``bundle.json`` lists every file with its sha256 and size: each must match, and no file may be
   in the tarball that the manifest does not list; every run is listed once, and a path the
   manifest names (dataset manifests, locks) must be the bundle's own file at its expected place:
   nothing outside the bundle is opened, nor its content or fingerprint printed;
3. for each run: every number ``result.json`` reports is recomputed from the bundled logs
   (``harness.results.logs.numbers``, with the batch and world size from the bundled plan and job) and
   compared key by key; the verdicts are judged again against the bundled recipe's reference;
   the dataset fingerprint and the image lock digest are recomputed from the bundled manifest
   and locks;
4. for each run: its plan and job are rebuilt from the bundled recipe and its recorded executor,
   options, folders and port, the options validated as a fresh command line would be
   (``rederive``); any recorded field that differs fails;
5. each run's worker event streams (``events.mllog``, one per attempt) comply with the harness's
   ruleset under MLCommons' compliance checker (``harness.results.logs.compliance``);
6. for a group bundle: the group record must name exactly the bundled runs as its finished
   members, with their seeds and recipe (``groups``).

A number edited in ``result.json`` fails step 3 even when ``bundle.json`` was rewritten to match;
a changed log line fails step 2 (naming the log) and, if it changed a number, step 3 too.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.core.errors import BadInput
from harness.core.scratch import scratch_folder
from harness.core.untrusted import UntrustedInput, read_bounded, short
from harness.data.manifest import sha256_file
from harness.evidence.bundles.pack import CONTEXT_PREFIX, DATASET_MANIFEST, RUNS_PREFIX
from harness.evidence.bundles.tarball import NotABundle, extract_safely
from harness.store.layout import WORK_DIR
from harness.store.records import BundleRecord, DamagedRecord, DatasetRecord, PlanRecord, parse_record
from harness.store.runs import MAX_RECORD_BYTES, RUN_ID_PATTERN, RunDir

# What verify reads into memory, bounded before reading: a dataset manifest is a few megabytes;
# far larger ones are refused, not parsed (records: runs.MAX_RECORD_BYTES).
MAX_MANIFEST_BYTES = 32 << 20

_MISSING = object()


@dataclass
class Verification:
    """The outcome: ``differences`` is empty on PASS; each is one line naming the file (and key)."""

    bundle: Path
    record: BundleRecord | None = None
    differences: list[str] = field(default_factory=list)
    files_checked: int = 0
    numbers_checked: int = 0
    verdicts_checked: int = 0

    @property
    def passed(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        runs = len(self.record.runs) if self.record else 0
        counts = (f"{runs} run{'s' * (runs != 1)}, {self.files_checked} files checksummed, "
                  f"{self.numbers_checked} numbers recomputed, {self.verdicts_checked} verdicts re-judged")
        if self.passed:
            return f"PASS {self.bundle} ({counts})"
        return f"FAIL {self.bundle}: {len(self.differences)} difference(s) ({counts})"


def _same(a, b) -> bool:
    """Exactly equal (the same code parses the same text, so no tolerance); NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _damage_line(exc: Exception, run: RunDir, where: str) -> str:
    """A damaged record's one line, naming the file as it is in the bundle (not the temp folder)."""
    return " ".join(str(exc).replace(str(run.path), where).split())


def _read_manifest(root: Path, bundle: Path) -> BundleRecord:
    path = root / BundleRecord.FILE
    if not path.is_file():
        raise NotABundle(f"{bundle}: not a bundle (no {BundleRecord.FILE} at its top)")
    try:
        text = read_bounded(path, MAX_RECORD_BYTES, what=f"{bundle}: {BundleRecord.FILE}").decode()
        return parse_record(BundleRecord, text, where=f"{bundle}: {BundleRecord.FILE}")  # type: ignore[return-value]
    except (DamagedRecord, UnicodeDecodeError, UntrustedInput) as exc:
        raise NotABundle(f"not a readable bundle: {exc}") from None


def check_files(root: Path, record: BundleRecord, names: list[str], out: Verification) -> None:
    listed = {f.path: f for f in record.files}
    if len(listed) != len(record.files):
        out.differences.append(f"{BundleRecord.FILE}: files: a path is listed more than once")
    for name in sorted(set(names) - set(listed) - {BundleRecord.FILE}):
        out.differences.append(f"{short(name)}: in the tarball but not listed in {BundleRecord.FILE}")
    present = set(names)
    for name, entry in sorted(listed.items()):
        path = root / name
        # Only the extracted files themselves: a listed '../x' or '/dev/zero' is never opened.
        if name not in present or not path.is_file():
            out.differences.append(f"{short(name)}: listed in {BundleRecord.FILE} but missing from the tarball")
            continue
        out.files_checked += 1
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            out.differences.append(f"{name}: sha256 differs from {BundleRecord.FILE} (the file was changed)")


def _batch_and_devices(run: RunDir, recipe) -> tuple[int, int]:
    """As the run was built: the plan's job (batch) and world size; an ingested run has neither,
    its recipe describes what the logs said."""
    plan = run.read(PlanRecord)
    if plan is not None:
        return plan.job.train.batch_per_device, plan.world_size
    return recipe.train.batch_per_device, recipe.device.world_size


def check_numbers(run: RunDir, where: str, out: Verification) -> None:
    from harness.results.logs import LogParseError
    from harness.results.logs.numbers import recompute_numbers, result_numbers
    from harness.planning.stored_recipe import recipe_of
    from harness.results.verdict import judge_all

    result_path = f"{where}/{run.result_file.name}"
    try:
        result = run.result()
        recipe = recipe_of(run)
        batch, devices = _batch_and_devices(run, recipe)
    except DamagedRecord as exc:
        out.differences.append(_damage_line(exc, run, where))
        return
    if result is None:
        out.differences.append(f"{result_path}: missing (the bundle has no reported numbers to check)")
        return
    for key, reported, expected in (("batch_per_device", result.batch_per_device, batch),
                                    ("device.count", result.device.count, devices),
                                    ("run_id", result.run_id, run.run_id)):
        if reported != expected:
            out.differences.append(f"{result_path}: {key}: reported {reported!r}, the bundled plan/folder says {expected!r}")
    try:
        recomputed = recompute_numbers(run.path, batch_per_device=batch, devices=devices)
    except (LogParseError, OSError, ValueError) as exc:
        if result.parse_error is None:
            out.differences.append(f"{where}/work_dir: the logs cannot be parsed ({' '.join(str(exc).split())}), "
                                   f"yet {run.result_file.name} reports numbers")
        return
    reported = result_numbers(result.model_dump())
    for key in sorted(set(recomputed) | set(reported)):
        got, want = reported.get(key, _MISSING), recomputed.get(key, _MISSING)
        out.numbers_checked += 1
        if got is _MISSING:
            out.differences.append(f"{result_path}: {key}: not reported, recomputed from the logs {want!r}")
        elif want is _MISSING:
            out.differences.append(f"{result_path}: {key}: reported {got!r}, not in the logs")
        elif not _same(got, want):
            out.differences.append(f"{result_path}: {key}: reported {got!r}, recomputed from the logs {want!r}")
    # The verdicts, judged again from the recomputed numbers and the bundled recipe's reference.
    compared = recipe.reference.compare
    if result.compared != compared:
        out.differences.append(f"{result_path}: compared: reported {result.compared!r}, the recipe says {compared!r}")
    metrics = {name.split(".", 1)[1]: value for name, value in recomputed.items() if name.startswith(f"{compared}.")}
    judged = {v.metric: v for v in judge_all(recomputed.get("fps"), metrics, recipe.reference)}
    stated = {v.metric: v for v in result.verdicts}
    for metric in sorted(set(judged) | set(stated)):
        out.verdicts_checked += 1
        mine, theirs = judged.get(metric), stated.get(metric)
        if theirs is None or mine is None:
            out.differences.append(f"{result_path}: verdicts.{metric}: "
                                   f"{'missing' if theirs is None else 'not a metric this harness judges'}")
        elif (theirs.status, theirs.reference) != (mine.status, mine.reference) or not _same(theirs.measured, mine.measured):
            out.differences.append(f"{result_path}: verdicts.{metric}: reported {theirs.status} "
                                   f"({theirs.measured!r} vs {theirs.reference!r}), re-judged {mine.status} "
                                   f"({mine.measured!r} vs {mine.reference!r}) against the bundled recipe's reference")


def check_context(root: Path, run: RunDir, record: BundleRecord, names: set[str], where: str, out: Verification) -> None:
    """The dataset manifest against dataset.json and result.json, the locks against their digest."""
    from harness.data.manifest import fingerprint_of
    from harness.executors.image_locks import lock_digest

    try:
        dataset = run.dataset()
        result = run.result()
    except DamagedRecord as exc:
        out.differences.append(_damage_line(exc, run, where))
        return
    fingerprint = dataset.fingerprint if dataset else None
    if result is not None and result.provenance.dataset_fingerprint != fingerprint and dataset is not None:
        out.differences.append(f"{where}/{run.result_file.name}: provenance.dataset_fingerprint: reported "
                               f"{result.provenance.dataset_fingerprint!r}, {dataset.FILE} says {fingerprint!r}")
    manifest_name = record.dataset_manifests.get(run.run_id)
    expected_name = f"{CONTEXT_PREFIX}/{run.run_id}/{DATASET_MANIFEST}"
    if manifest_name and (manifest_name != expected_name or manifest_name not in names):
        # Never opened: a FIFO, /dev/zero or ../../secret.json named here stays unread.
        out.differences.append(f"{BundleRecord.FILE}: dataset_manifests.{run.run_id}: {short(manifest_name)} is not "
                               f"the bundle's own {expected_name}")
    elif manifest_name:
        try:
            manifest = json.loads(read_bounded(root / manifest_name, MAX_MANIFEST_BYTES, what=manifest_name))
            recomputed = fingerprint_of(manifest["files"])
        except UntrustedInput as exc:
            out.differences.append(str(exc))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            out.differences.append(f"{manifest_name}: not a dataset manifest ({exc.__class__.__name__})")
        else:
            for label, value in (("its own fingerprint", manifest.get("fingerprint")),
                                 (f"{where}/{DatasetRecord.FILE}", fingerprint)):
                if value != recomputed:
                    out.differences.append(f"{manifest_name}: fingerprint recomputed from its file list is "
                                           f"{recomputed}, {label} says {value!r}")
    lock = record.image_locks.get(run.run_id)
    if lock and lock.files and lock.digest:
        # harness.executors.image_locks hashes <root>/docker/<kind>/requirements-*.lock; lay the bundled ones out so.
        with scratch_folder("verify-locks") as tmp:
            folder = Path(tmp) / "docker" / Path(lock.kind).name
            folder.mkdir(parents=True)
            for name in lock.files:
                source = root / name
                if name not in names or PurePosixPath(name).parent != PurePosixPath(f"{CONTEXT_PREFIX}/{run.run_id}/locks"):
                    out.differences.append(f"{short(name)}: image lock listed in {BundleRecord.FILE} but not bundled")
                    return
                (folder / Path(name).name).write_bytes(read_bounded(source, MAX_MANIFEST_BYTES, what=name))
            try:
                digest = lock_digest(lock.kind, Path(tmp))
            except BadInput as exc:  # an unknown device kind is a difference, not a crash
                digest = f"unknown ({' '.join(str(exc).split())})"
            if digest != lock.digest:
                out.differences.append(f"{CONTEXT_PREFIX}/{run.run_id}/locks: digest recomputed {digest}, "
                                       f"{BundleRecord.FILE} says {lock.digest}")


def _oversized_records(run: RunDir, where: str) -> list[str]:
    """A run's JSON records and recipe are parsed whole: each is bounded first."""
    lines = []
    for path in sorted(run.path.glob("*.json")) + [run.recipe_file]:
        if path.is_file() and path.stat().st_size > MAX_RECORD_BYTES:
            lines.append(f"{where}/{path.name}: {path.stat().st_size} bytes, more than a record holds "
                         f"({MAX_RECORD_BYTES}); not read")
    return lines


def check_runs_listed(record: BundleRecord, out: Verification) -> None:
    if not record.runs:
        out.differences.append(f"{BundleRecord.FILE}: runs: empty; a bundle holds at least one run")
    seen: set[str] = set()
    for run_id in record.runs:
        if run_id in seen:
            out.differences.append(f"{BundleRecord.FILE}: runs: {short(run_id)} is listed more than once")
        seen.add(run_id)


def check_event_streams(run: RunDir, where: str, out: Verification) -> None:
    """Every attempt's event stream against the shipped ruleset, by MLCommons' own checker."""
    from harness.results.logs.compliance import check_run

    if run.work_dir.is_dir():
        out.differences.extend(check_run(run.work_dir, name=f"{where}/{WORK_DIR}")[1])


def verify_tree(root: Path, names: list[str], bundle: Path) -> Verification:
    """Verify an already extracted bundle (``names``: its files)."""
    from harness.evidence.bundles.groups import check_group
    from harness.evidence.bundles.rederive import check_plan

    out = Verification(bundle=bundle, record=_read_manifest(root, bundle))
    check_files(root, out.record, names, out)
    check_runs_listed(out.record, out)
    present = set(names)
    for run_id in dict.fromkeys(out.record.runs):
        where = f"{RUNS_PREFIX}/{run_id}"
        if not RUN_ID_PATTERN.match(run_id) or not (root / where).is_dir():
            out.differences.append(f"{BundleRecord.FILE}: runs: {short(run_id)} is not a run folder in the bundle")
            continue
        run = RunDir(root / where)
        oversized = _oversized_records(run, where)
        if oversized:
            out.differences += oversized
            continue
        check_numbers(run, where, out)
        check_context(root, run, out.record, present, where, out)
        out.differences += check_plan(run, where)
        check_event_streams(run, where, out)
    out.differences += check_group(root, out.record, present)
    return out


def verify_bundle(bundle: Path, *, keep: Path | None = None) -> Verification:
    """Extract ``bundle`` into a scratch folder (or into ``keep``) and verify it. Raises
    ``NotABundle`` (exit 2) when it is not a safe, readable bundle."""
    bundle = Path(bundle)
    if keep is not None:
        return verify_tree(keep, extract_safely(bundle, keep), bundle)
    with scratch_folder("verify") as tmp:
        return verify_tree(tmp, extract_safely(bundle, tmp), bundle)
