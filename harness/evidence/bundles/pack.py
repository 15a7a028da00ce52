"""``harness bundle``: pack runs with everything a reader needs to check their claims.

Layout of the tarball (every path relative, sorted, see ``tarball``)::

    bundle.json                              the manifest (``BundleRecord``): every file's sha256
    runs/<run-id>/recipe.yaml                the recipe as run
    runs/<run-id>/resolved_config.py         the mmengine config the worker ran, and configs/
    runs/<run-id>/train.log                  the full log, and work_dir/<attempt>/*.log,
                                             events.mllog, vis_data/scalars.json, vis_data/config.py
    runs/<run-id>/<record>.json              result, provenance, worker_env, plan, job, dataset,
                                             status, recipe_source
    context/<run-id>/locks/requirements-*.lock   the package locks of the run's device kind
    context/<run-id>/dataset-manifest.json   the dataset manifest (file list and sha256s, no data)
    <extra records>                          e.g. the group record of a group bundle

Checkpoints (``*.pth``), plots and lock files of the run folder are left out: they are large,
or redrawn from the logs, and verifying a claim does not need them.

Groups: ``BundleSource`` is a list of run folders plus extra records (name, file). A run id
gives one run and none; a group id gives the group's finished members and its group record
(``source_for``, which uses the group store when this harness has one).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness import __version__
from harness.core.errors import BadInput
from harness.executors.image_locks import lock_digest, lock_paths
from harness.store.records import (BundleFile, BundleRecord, DamagedRecord, DatasetRecord, ImageLockRef, JobRecord,
                                    PlanRecord, ProvenanceRecord, RecipeSourceRecord, RunResult, RunStatus,
                                    WorkerEnvRecord, dump_record)
from harness.store.layout import CONFIGS_DIR, LOG_FILE, RECIPE_FILE, RESOLVED_CONFIG
from harness.store.runs import RunDir, RunStore, RunStoreError

RUN_RECORDS = (RunStatus, PlanRecord, JobRecord, DatasetRecord, RecipeSourceRecord, ProvenanceRecord,
               WorkerEnvRecord, RunResult)
# Inside work_dir/<attempt>/: what the numbers are parsed from, and the config mmengine dumped.
ATTEMPT_FILES = ("*.log", "*.log.json", "events.mllog", "vis_data/scalars.json", "vis_data/config.py")
LEFT_OUT = [
    "checkpoints (*.pth): hundreds of megabytes and not needed to check a number; ask the run's owner",
    "plots: redrawn from the logs by `harness report`",
    "the dataset itself: only its manifest (every file's sha256) and fingerprint",
]
RUNS_PREFIX = "runs"
CONTEXT_PREFIX = "context"
DATASET_MANIFEST = "dataset-manifest.json"


class BundleError(BadInput):
    """A run or group that cannot be bundled (exit 2)."""


@dataclass
class BundleSource:
    """What to pack: run folders, and extra records (path inside the bundle, file) such as a
    group record."""

    runs: list[RunDir]
    group: str | None = None
    extra_records: list[tuple[str, Path]] = field(default_factory=list)


def source_for(results_dir: Path, name: str) -> BundleSource:
    """A run id -> that run; a group id -> its finished member runs and its group record."""
    try:
        return BundleSource(runs=[RunStore(results_dir).get(name)])
    except RunStoreError as run_error:
        if not name.startswith("g"):
            raise BundleError(str(run_error)) from None
    try:
        from harness.store.runs import GroupStore  # the group store (harness run --repeat), when present
    except ImportError:
        raise BundleError(f"{name!r}: not a run id, and this harness has no group store") from None
    try:
        group_dir = GroupStore(results_dir).get(name)
        group = group_dir.read()
    except (RunStoreError, DamagedRecord) as exc:
        raise BundleError(str(exc)) from None
    store = RunStore(results_dir)
    runs = [store.get(member.run_id) for member in group.finished_members()]
    if not runs:
        raise BundleError(f"group {name}: no member run finished; nothing to bundle")
    record = group_dir.record_file
    return BundleSource(runs=runs, group=name, extra_records=[(f"groups/{name}/{record.name}", record)])


def run_files(run: RunDir) -> list[tuple[str, Path]]:
    """(path inside the run folder, file) for everything of the run that goes into a bundle."""
    wanted = [RECIPE_FILE, RESOLVED_CONFIG, LOG_FILE, *(model.FILE for model in RUN_RECORDS)]
    files = [(name, run.path / name) for name in wanted]
    configs = run.path / CONFIGS_DIR
    if configs.is_dir():
        files += [(p.relative_to(run.path).as_posix(), p) for p in configs.rglob("*")]
    if run.work_dir.is_dir():
        for attempt in sorted(p for p in run.work_dir.iterdir() if p.is_dir()):
            for pattern in ATTEMPT_FILES:
                files += [(p.relative_to(run.path).as_posix(), p) for p in attempt.glob(pattern)]
    # Links are never followed: a bundle holds the run's own files only.
    return sorted({(name, path) for name, path in files if path.is_file() and not path.is_symlink()})


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: unreadable ({exc.strerror or exc.__class__.__name__})") from None


def _image_locks(run: RunDir, kind: str, made_by: dict) -> tuple[ImageLockRef, list[tuple[str, bytes]]]:
    prefix = f"{CONTEXT_PREFIX}/{run.run_id}/locks"
    try:
        paths = lock_paths(kind)
    except (KeyError, ValueError, BadInput):
        return ImageLockRef(kind=kind, note=f"no image locks for device kind {kind!r}"), []
    present = [p for p in paths if p.is_file()]
    provenance = run.provenance()
    run_commit = provenance.harness_commit if provenance else None
    note = (f"the locks of the harness that made this bundle (commit {made_by.get('harness_commit')}); "
            f"the run was made at commit {run_commit}")
    if run_commit and run_commit == made_by.get("harness_commit") and not made_by.get("harness_dirty"):
        note = "the locks of the commit that made the run"
    ref = ImageLockRef(kind=kind, digest=lock_digest(kind), files=[f"{prefix}/{p.name}" for p in present], note=note)
    return ref, [(f"{prefix}/{p.name}", _read(p)) for p in present]


def _dataset_manifest(run: RunDir) -> bytes | None:
    """The dataset manifest of the run's dataset, when it is still on this machine and still
    describes the data the run used (same fingerprint)."""
    from harness.data.manifest import manifest_locations

    dataset = run.dataset()
    if dataset is None or not dataset.devkit or not dataset.fingerprint:
        return None
    for location in manifest_locations(Path(dataset.devkit)):
        try:
            data = location.read_bytes()
            if json.loads(data).get("fingerprint") == dataset.fingerprint:
                return data
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _made_by() -> dict:
    from harness.store.provenance import _git

    status = _git("status", "--porcelain")
    return {"harness_version": __version__, "harness_commit": _git("rev-parse", "HEAD"),
            "harness_dirty": bool(status) if status is not None else None}


def bundle_members(source: BundleSource) -> tuple[BundleRecord, list[tuple[str, bytes]]]:
    """Every member of the bundle (name, bytes), the manifest first."""
    made_by = _made_by()
    members: list[tuple[str, bytes]] = []
    locks: dict[str, ImageLockRef] = {}
    manifests: dict[str, str] = {}
    for run in source.runs:
        damage = run.damage()
        if damage:
            raise BundleError(f"run {run.run_id} cannot be bundled: {damage}")
        if run.result() is None:
            raise BundleError(f"run {run.run_id}: no result.json yet (still running, or never parsed); nothing to check")
        members += [(f"{RUNS_PREFIX}/{run.run_id}/{name}", _read(path)) for name, path in run_files(run)]
        locks[run.run_id], lock_members = _image_locks(run, run.result().device.kind, made_by)
        members += lock_members
        manifest = _dataset_manifest(run)
        if manifest is not None:
            manifests[run.run_id] = f"{CONTEXT_PREFIX}/{run.run_id}/{DATASET_MANIFEST}"
            members.append((manifests[run.run_id], manifest))
    members += [(name, _read(path)) for name, path in source.extra_records]
    files = [BundleFile(path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
             for name, data in sorted(members)]
    record = BundleRecord(made_by=made_by, runs=[r.run_id for r in source.runs], group=source.group,
                          extra_records=[name for name, _ in source.extra_records], image_locks=locks,
                          dataset_manifests=manifests, left_out=LEFT_OUT, files=files)
    return record, [(BundleRecord.FILE, dump_record(record).encode()), *members]


def write_bundle(source: BundleSource, out: Path) -> BundleRecord:
    from harness.evidence.bundles.tarball import write_tarball

    out = Path(out)
    if not out.parent.is_dir():
        raise BundleError(f"{out}: its folder {out.parent} does not exist")
    record, members = bundle_members(source)
    write_tarball(out, members)
    return record
