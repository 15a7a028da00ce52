"""The run store: one folder per run under ``results/runs/<run-id>/``.

A run folder holds the recipe as run, the plan, the job, the full log, the mmseg work_dir, its
status and, once parsed, ``result.json``. Run ids are unique (the folder is created with
``mkdir``, which fails if it exists) and can never point outside the store.

``RunDir`` is the only reader and writer of the folder's JSON records (``harness.store.records``):
writes are atomic, reads are validated. Whether a run is alive is decided by its lock: the
harness attempt that runs it holds an exclusive ``flock`` on ``<run>/.lock`` for the whole
attempt; the kernel drops it when that process dies, however it dies, so no stale lock survives.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from harness.core.errors import BadInput, EnvironmentNotReady
from harness.core.fileio import write_text_atomic
from harness.core.flocks import lock_conflicts
from harness.core.scratch import Scratch
from harness.core.untrusted import ArchiveLimits, copy_tree_bounded
from harness.store.layout import (LOCK_FILE, LOG_FILE, NODE_LOG, NODES_DIR, PLOTS_DIR, RECIPE_FILE, RESOLVED_CONFIG,
                                   TRAINER_LOCK_FILE, WORK_DIR)
from harness.store.records import (STATES, DamagedRecord, DatasetRecord, GroupRecord, JobRecord, OptimWrapperUsed,
                                    PlanRecord, ProvenanceRecord, RecipeSourceRecord, Record, RunResult, RunStatus,
                                    WorkerEnvRecord, dump_record, read_record)

RUNS_DIR = "runs"
GROUPS_DIR = "groups"
# A run folder copied in from elsewhere (a bundle, a results PVC): checkpoints are hundreds of
# megabytes each; everything else in a run folder is text that is parsed (MAX_TEXT_FILE_BYTES).
RUN_FOLDER_LIMITS = ArchiveLimits(max_members=100_000, max_member_bytes=8 << 30, max_total_bytes=256 << 30)
MAX_TEXT_FILE_BYTES = 512 << 20
# A run's own records (status.json, result.json ..., recipe.yaml) are parsed whole: kilobytes to
# a few megabytes; one far larger is refused before it is read.
MAX_RECORD_BYTES = 16 << 20
CHECKPOINT_SUFFIX = ".pth"
INCOMING = ".incoming"  # scratch folders in runs/ while a run is copied in (harness.core.scratch)
RUN_ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]{1,64}-[0-9a-f]{6}$")
GROUP_ID_PATTERN = re.compile(r"^g[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]{1,64}-[0-9a-f]{6}$")
__all__ = ["RunDir", "RunStore", "GroupDir", "GroupStore", "RunStoreError", "RunBusy", "DamagedRecord", "RunLock", "STATES", "utc_now"]

R = TypeVar("R", bound=Record)


class RunStoreError(BadInput):
    """A run id that is malformed or names no run, or a run that cannot be continued as asked."""


class RunBusy(EnvironmentNotReady):
    """Another harness process (or its trainer) holds the run (exit 3)."""


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RunLock:
    """An exclusive ``flock`` on a run's lock file, held until ``release`` or process death."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, what: str) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(f"{what}: another harness process is running it (its lock {self.path} is held)") from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True)
class RunRecords:
    """What one run folder holds, read once (``RunDir.records``)."""
    status: RunStatus
    recipe_text: str
    job: JobRecord | None  # None: not read (an ingested or not yet started run need not have it)
    plan: PlanRecord | None
    result: RunResult | None
    dataset: DatasetRecord | None
    provenance: ProvenanceRecord | None
    worker_env: WorkerEnvRecord | None
    recipe_source: RecipeSourceRecord | None


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    recipe_file = property(lambda self: self.path / RECIPE_FILE)
    log_file = property(lambda self: self.path / LOG_FILE)
    nodes_dir = property(lambda self: self.path / NODES_DIR)
    work_dir = property(lambda self: self.path / WORK_DIR)
    plots_dir = property(lambda self: self.path / PLOTS_DIR)
    lock_file = property(lambda self: self.path / LOCK_FILE)
    trainer_lock_file = property(lambda self: self.path / TRAINER_LOCK_FILE)

    # Where each record lives, for tools and tests that read the JSON as other programs would.
    status_file = property(lambda self: self.record_path(RunStatus))
    plan_file = property(lambda self: self.record_path(PlanRecord))
    result_file = property(lambda self: self.record_path(RunResult))

    def node_log_file(self, node: int) -> Path:
        return self.nodes_dir / NODE_LOG.format(node=node)

    def record_path(self, model: type[Record]) -> Path:
        return self.path / model.FILE

    # -- records ----------------------------------------------------------------------------

    def read(self, model: type[R]) -> R | None:
        """The record, None when its file does not exist; DamagedRecord when it cannot be read."""
        return read_record(model, self.record_path(model))  # type: ignore[return-value]

    def require(self, model: type[R]) -> R:
        record = self.read(model)
        if record is None:
            raise DamagedRecord(f"{self.record_path(model)}: missing (every run folder of this kind has one)")
        return record

    def write(self, record: Record) -> None:
        write_text_atomic(self.record_path(type(record)), dump_record(record))

    def status(self) -> RunStatus:
        return self.require(RunStatus)

    def plan(self) -> PlanRecord:
        return self.require(PlanRecord)

    def job(self) -> JobRecord:
        return self.require(JobRecord)

    def result(self) -> RunResult | None:
        return self.read(RunResult)

    def dataset(self) -> DatasetRecord | None:
        return self.read(DatasetRecord)

    def provenance(self) -> ProvenanceRecord | None:
        return self.read(ProvenanceRecord)

    def worker_env(self) -> WorkerEnvRecord | None:
        return self.read(WorkerEnvRecord)

    def recipe_source(self) -> RecipeSourceRecord | None:
        return self.read(RecipeSourceRecord)

    def recipe_text(self) -> str:
        try:
            return self.recipe_file.read_text()
        except FileNotFoundError:
            raise DamagedRecord(f"{self.recipe_file}: missing (the recipe this run was started with)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DamagedRecord(f"{self.recipe_file}: unreadable ({exc.__class__.__name__})") from None

    def resolved_config_text(self) -> str | None:
        """The mmengine config the worker really ran (every override applied); None when the run
        never got that far or was ingested from logs made elsewhere."""
        try:
            return (self.path / RESOLVED_CONFIG).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise DamagedRecord(f"{self.path / RESOLVED_CONFIG}: unreadable ({exc.__class__.__name__})") from None

    def looks_like_a_run(self) -> bool:
        """A harness run folder (status and recipe present), whatever its records say."""
        return self.record_path(RunStatus).is_file() and self.recipe_file.is_file()

    def records(self) -> RunRecords:
        """Every record of this run folder, each read and validated once; DamagedRecord (one
        line) for the first that does not read. An ingested run has no plan or job; any other
        run must have both."""
        status = self.status()
        recipe_text = self.recipe_text()
        needs_plan = not status.ingested and status.state != "created"
        return RunRecords(
            status=status, recipe_text=recipe_text,
            job=self.job() if needs_plan else None, plan=self.plan() if needs_plan else None,
            result=self.read(RunResult), dataset=self.read(DatasetRecord), provenance=self.read(ProvenanceRecord),
            worker_env=self.read(WorkerEnvRecord), recipe_source=self.read(RecipeSourceRecord),
        )

    def damage(self) -> str | None:
        """One line saying what is damaged in this run folder, or None when every record reads."""
        try:
            self.records()
        except DamagedRecord as exc:
            return str(exc)
        return None

    # -- state --------------------------------------------------------------------------------

    def set_status(self, state: str, **details) -> RunStatus:
        """Update status.json (atomically). A damaged or missing status starts afresh, so that
        the outcome of an attempt is always recorded."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        try:
            current = self.read(RunStatus)
        except DamagedRecord:
            current = None
        data = current.model_dump() if current else {}
        now = utc_now()
        data.update(details, state=state, updated=now)
        if not data.get("created"):
            data["created"] = now
        status = RunStatus.model_validate(data)
        self.write(status)
        return status

    def lock(self) -> RunLock:
        """Take the run's exclusive lock for one attempt (RunBusy when another process has it)."""
        return RunLock(self.lock_file).acquire(f"run {self.run_id}")

    def is_live(self) -> bool:
        """A harness process holds the run's lock (so it is being run right now)."""
        return lock_conflicts(self.lock_file)  # some process holds a lock that conflicts with a shared one

    def trainer_alive(self) -> bool:
        """A worker of this run is still alive (it holds the trainer lock)."""
        return lock_conflicts(self.trainer_lock_file, exclusive=True)  # a worker holds its shared lock

    def effective_state(self, status: RunStatus | None = None) -> str:
        """The recorded state (``status``, when already read), except that a 'running' run whose
        lock nobody holds (its harness died: SIGKILL, terminal closed, machine rebooted) shows as
        'stale'; 'damaged' when the status cannot be read."""
        try:
            state = (status or self.status()).state
        except DamagedRecord:
            return "damaged"
        if state == "running" and not self.is_live():
            return "stale"
        return state

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path / name, text)


def _environment_error(path: Path, exc: OSError) -> EnvironmentNotReady:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return EnvironmentNotReady(f"{path}: cannot write the results folder ({reason}); give --results a writable folder")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return EnvironmentNotReady(f"{path}: not a folder ({reason}); give --results a folder")
    return EnvironmentNotReady(f"{path}: cannot use the results folder ({reason})")


def check_writable(results_dir: Path) -> None:
    """EnvironmentNotReady (exit 3) unless ``results_dir/runs`` could be created and written.
    Creates nothing: a refused run leaves no folder behind."""
    target = Path(results_dir) / RUNS_DIR
    while not target.exists():
        if target.parent == target:
            break
        if target.is_symlink():
            break
        target = target.parent
    if target.exists() and not target.is_dir():
        raise EnvironmentNotReady(f"{target}: not a folder; give --results a folder")
    if not os.access(target, os.W_OK | os.X_OK):
        raise EnvironmentNotReady(f"{target}: not writable; give --results a writable folder")
    try:
        os.statvfs(target)
    except OSError as exc:
        raise _environment_error(target, exc) from None
    if _read_only_mount(target):
        raise EnvironmentNotReady(f"{target}: on a read-only file system; give --results a writable folder")


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _create_folder(runs_dir: Path) -> None:
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _environment_error(runs_dir, exc) from None


def _new_unique_folder(parent: Path, prefix: str, recipe_name: str, what: str) -> Path:
    """``parent/<prefix><UTC stamp>-<recipe>-<6 hex>``, created here (never one that exists)."""
    _create_folder(parent)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for _ in range(16):
        path = parent / f"{prefix}{stamp}-{recipe_name}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise _environment_error(parent, exc) from None
        return path
    raise RunStoreError(f"{parent}: could not create a unique {what} folder")


class RunStore:
    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self.runs_dir = self.results_dir / RUNS_DIR

    def create(self, recipe_name: str) -> RunDir:
        check_writable(self.results_dir)
        return RunDir(_new_unique_folder(self.runs_dir, "", recipe_name, "run"))

    def get(self, run_id: str) -> RunDir:
        if not RUN_ID_PATTERN.match(run_id):
            raise RunStoreError(f"run id {run_id!r}: expected an id like 20261125T201500Z-smoke_cpu-a1b2c3")
        path = self.runs_dir / run_id
        if not path.is_dir():
            raise RunStoreError(f"run id {run_id!r}: no such run in {self.runs_dir}")
        return RunDir(path)

    def adopt(self, run_id: str, folder: Path) -> RunDir | None:
        """Copy a complete run folder made elsewhere (a verified bundle's) into the store under its
        own id; None when the store already has that run. The copy appears whole or not at all."""
        if not RUN_ID_PATTERN.match(run_id):
            raise RunStoreError(f"run id {run_id!r}: expected an id like 20261125T201500Z-smoke_cpu-a1b2c3")
        check_writable(self.results_dir)
        _create_folder(self.runs_dir)
        target = self.runs_dir / run_id
        if target.exists():
            return None
        # In the store (the same file system, for the rename), in a scratch folder its owner's
        # lock marks as live: one left by a killed ingest is removed by the next.
        scratch = Scratch(INCOMING, parent=self.runs_dir)
        try:
            incoming = scratch.path / run_id
            # The folder was made elsewhere: regular files only, no link followed, sizes bounded
            # (harness.core.untrusted; a refusal is one line, exit 2, and leaves no copy).
            copy_tree_bounded(folder, incoming, RUN_FOLDER_LIMITS)
            os.rename(incoming, target)  # fails (ENOTEMPTY/EEXIST) if the run appeared meanwhile
        except OSError as exc:
            if target.exists():
                return None
            raise _environment_error(self.runs_dir, exc) from None
        finally:
            scratch.cleanup()
        return RunDir(target)

    def all(self) -> list[RunDir]:
        if not self.runs_dir.is_dir():
            return []
        return [RunDir(p) for p in sorted(self.runs_dir.iterdir()) if p.is_dir() and RUN_ID_PATTERN.match(p.name)]


@dataclass(frozen=True)
class GroupDir:
    """``results/groups/<group-id>/``: the group record (its members are ordinary run folders)."""

    path: Path

    @property
    def group_id(self) -> str:
        return self.path.name

    @property
    def record_file(self) -> Path:
        return self.path / GroupRecord.FILE

    lock_file = property(lambda self: self.path / LOCK_FILE)

    def lock(self) -> RunLock:
        """Held by the harness running the group (RunBusy while another holds it); a group that
        says 'running' while nobody holds it was left by a killed harness (harness.store.group_repair)."""
        return RunLock(self.lock_file).acquire(f"group {self.group_id}")

    def read(self) -> GroupRecord:
        record = read_record(GroupRecord, self.record_file)
        if record is None:
            raise DamagedRecord(f"{self.record_file}: missing (every group folder has one)")
        return record  # type: ignore[return-value]

    def write(self, record: GroupRecord) -> None:
        record.updated = utc_now()
        write_text_atomic(self.record_file, dump_record(record))


class GroupStore:
    """Groups of repeated runs under ``results/groups/``; the runs stay in ``results/runs/``."""

    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self.groups_dir = self.results_dir / GROUPS_DIR

    def create(self, recipe_name: str) -> GroupDir:
        check_writable(self.results_dir)
        return GroupDir(_new_unique_folder(self.groups_dir, "g", recipe_name, "group"))

    def get(self, group_id: str) -> GroupDir:
        if not GROUP_ID_PATTERN.match(group_id):
            raise RunStoreError(f"group id {group_id!r}: expected an id like g20261125T201500Z-smoke_cpu-a1b2c3")
        path = self.groups_dir / group_id
        if not path.is_dir():
            raise RunStoreError(f"group id {group_id!r}: no such group in {self.groups_dir}")
        return GroupDir(path)

    def adopt(self, record: GroupRecord) -> GroupDir | None:
        """Store a group record made elsewhere (a verified group bundle's) under its own id;
        None when the store already has that group."""
        if not GROUP_ID_PATTERN.match(record.group_id):
            raise RunStoreError(f"group id {record.group_id!r}: expected an id like g20261125T201500Z-smoke_cpu-a1b2c3")
        check_writable(self.results_dir)
        _create_folder(self.groups_dir)
        path = self.groups_dir / record.group_id
        try:
            path.mkdir()
        except FileExistsError:
            return None
        except OSError as exc:
            raise _environment_error(self.groups_dir, exc) from None
        write_text_atomic(path / GroupRecord.FILE, dump_record(record))
        return GroupDir(path)

    def all(self) -> list[GroupDir]:
        if not self.groups_dir.is_dir():
            return []
        return [GroupDir(p) for p in sorted(self.groups_dir.iterdir()) if p.is_dir() and GROUP_ID_PATTERN.match(p.name)]


def record_optim_wrapper(run_path: Path, requested: str, used: str) -> None:
    """Add the optimizer wrapper the Runner really built to ``worker_env.json``."""
    path = Path(run_path) / WorkerEnvRecord.FILE
    record = read_record(WorkerEnvRecord, path) or WorkerEnvRecord()
    used_wrapper = OptimWrapperUsed(requested=requested, used=used, changed_by_mmengine=requested != used)
    write_text_atomic(path, dump_record(record.model_copy(update={"optim_wrapper": used_wrapper})))


def write_worker_env(run_path: Path, data: dict) -> None:
    """Rank 0 records what the training process itself ran with (``worker_env.json``)."""
    record = WorkerEnvRecord.model_validate(data)
    write_text_atomic(Path(run_path) / WorkerEnvRecord.FILE, dump_record(record))
