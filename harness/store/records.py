"""The run folder's JSON records as typed, versioned models.

Every JSON file the harness writes into ``results/runs/<id>/`` and reads back is one model here,
with a ``schema_version``. Only ``harness.store.runs.RunDir`` reads and writes them (atomically), so a
record is validated every time it is read: a damaged file (bad JSON, wrong shape) or a version
this harness does not know raises ``DamagedRecord`` naming the file and the field.

Version 0 is the layout written before records were versioned (no ``schema_version``; a
``result.json`` with ``"version": 1``): it has the same fields, and ``Record.migrate`` lifts it to 1.

The JSON schemas of these models are published under ``docs/schemas/`` (``harness schema``), so
other tools can read run folders without importing the harness.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from harness.core.errors import BadInput, first_problem
from harness.core.fileio import write_text_atomic

SCHEMA_VERSION = 1
STATES = ("created", "running", "succeeded", "failed", "interrupted")
State = Literal["created", "running", "succeeded", "failed", "interrupted"]


class DamagedRecord(BadInput):
    """A run-folder record that is missing, not JSON, of the wrong shape or of an unknown version."""


class Strict(BaseModel):
    """A part of a record: a field it does not know is refused, like the record's own."""

    model_config = ConfigDict(extra="forbid")


class Record(Strict):
    """A run-folder JSON file. A field the model does not know is refused, so that everything the
    harness writes is typed and in the published schema (docs/schemas/)."""

    model_config = ConfigDict(validate_assignment=True)
    FILE: ClassVar[str] = ""
    V0_ONLY: ClassVar[tuple[str, ...]] = ()  # fields of the version-0 layout that version 1 dropped
    schema_version: Literal[1] = SCHEMA_VERSION

    @model_validator(mode="before")
    @classmethod
    def migrate(cls, data: Any) -> Any:
        """Lift a record of the version-0 layout (no ``schema_version``) to ``SCHEMA_VERSION``, on
        every read, whoever reads it."""
        if isinstance(data, dict) and "schema_version" not in data:
            data = {key: value for key, value in data.items() if key not in cls.V0_ONLY}
            data["schema_version"] = SCHEMA_VERSION
        return data


# ---------------------------------------------------------------------------------------------
# status.json


class RunStatus(Record):
    """Where a run stands; written first and small, so that it survives a full disk."""

    FILE: ClassVar[str] = "status.json"
    state: State
    created: str | None = None
    updated: str | None = None
    started: str | None = None
    finished: str | None = None
    executor: str | None = None
    recipe: str | None = None
    attempts: int = 0
    command: list[str] | None = None
    pid: int | None = None
    host: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    last_lines: list[str] = Field(default_factory=list)
    ingested: bool = False
    source: str | None = None
    slurm_job_id: str | None = None  # the batch job that runs the attempt (harness.executors.slurm)


# ---------------------------------------------------------------------------------------------
# job.json and plan.json


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class TrainSettings:
    """The recipe's training settings as the worker applies them (``harness.planning.recipe.Train``)."""

    batch_per_device: int
    iterations: int
    log_interval: int
    val_interval: int
    checkpoint_interval: int
    workers_per_device: int
    norm: str
    amp: bool
    lr: float | None = None
    seed: int | None = 0
    amp_dtype: str | None = None
    channels_last: bool = False
    cudnn_benchmark: bool | None = None


class JobTracking(Strict):
    """Where the worker streams its curves (``harness.planning.tracking.job_tracking``)."""

    backends: list[str]
    mlflow_uri: str | None = None
    experiment: str
    run_id: str
    recipe: str


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Job:
    """The worker's input: everything the training process needs, as seen from where it runs. The
    host writes it to ``job.json`` (``JobRecord``: these fields and the record's version); the worker
    (locally or in a container) reads it. Paths are the worker's (container paths under Docker)."""

    recipe_name: str
    mode: str
    device_kind: str
    world_size: int
    config: str
    work_dir: str
    data_root: str
    train: TrainSettings
    pretrained: str | None = None
    checkpoint: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    resume: bool = False
    tracking: JobTracking | None = None  # the recipe's tracking section as the worker applies it

    def to_dict(self) -> dict:
        return TypeAdapter(Job).dump_python(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        return cls(**data)

    def write(self, path: Path) -> None:
        write_text_atomic(Path(path), dump_record(JobRecord.from_job(self)))


class _JobFile(Record):
    FILE: ClassVar[str] = "job.json"

    @classmethod
    def from_job(cls, job: Job) -> "JobRecord":
        return cls.model_validate(job.to_dict())

    def job(self) -> Job:
        return Job.from_dict(self.model_dump(exclude={"schema_version"}))


JobRecord = create_model("JobRecord", __base__=_JobFile, __doc__=Job.__doc__,
                         **{name: (info.annotation, info) for name, info in Job.__pydantic_fields__.items()})


class LaunchRecord(Strict):
    argv: list[str]
    environment: dict[str, str] = Field(default_factory=dict)
    world_size: int = 1


class NodeLaunchRecord(Strict):
    """One node's torchrun and environment (``harness.planning.launch.NodeLaunch``)."""

    node_rank: int
    argv: list[str]
    environment: dict[str, str] = Field(default_factory=dict)
    hostname: str | None = None
    setup: list[str] = Field(default_factory=list)


class RendezvousRecord(Strict):
    """Where a node learns the master's address and its rank (``harness.planning.launch.Rendezvous``)."""

    name: str
    master_addr: str
    master_port: str
    node_rank: str | None = None
    setup: list[str] = Field(default_factory=list)
    source: str = ""


class PlanNodes(Strict):
    """A multi-node plan's nodes (``harness.planning.plan.describe_nodes``)."""

    count: int
    nproc_per_node: int
    world_size: int
    master_port: int | None = None
    launches: list[NodeLaunchRecord]
    rendezvous: dict[str, RendezvousRecord]  # by scheduler


class PlanRecord(Record):
    """The resolved plan as run (``harness plan`` prints the same)."""

    FILE: ClassVar[str] = "plan.json"
    recipe_name: str
    mode: str
    executor: str
    backend: str
    dist_backend: str
    world_size: int
    device_ids: list[int]
    job: JobRecord
    launch: LaunchRecord
    container: dict[str, Any] | None = None
    config_changes: dict[str, Any] = Field(default_factory=dict)
    executor_options: dict[str, str] = Field(default_factory=dict)  # the executor's constructor options
    master_port: int | None = None  # multi-rank rendezvous; None for one rank
    nodes: PlanNodes | None = None  # multi-node plans only
    recipe: str | None = None  # the recipe file, in plans for Kubernetes (elsewhere recipe_source.json)


# ---------------------------------------------------------------------------------------------
# dataset.json, recipe_source.json, provenance.json, worker_env.json


class DatasetRecord(Record):
    FILE: ClassVar[str] = "dataset.json"
    devkit: str | None = None
    fingerprint: str | None = None
    check: str | None = None
    check_ok: bool | None = None
    check_skipped: bool = False


class RecipeSourceRecord(Record):
    """Where the recipe of a run came from (a path on the machine that started it)."""

    FILE: ClassVar[str] = "recipe_source.json"
    path: str


class ImageRecord(Strict):
    """The container image a run used: the tag asked for, its ID and the harness inside it."""

    tag: str
    asked: str | None = None  # the tag the recipe named, when the run used its content tag
    image_id: str | None = None
    harness_version: str | None = None


class HostFacts(Record):
    """What the harness records about itself and the host wherever a process starts: the host side
    (provenance.json) and the training process (worker_env.json, inside the container)."""

    harness_commit: str | None = None
    harness_dirty: bool | None = None
    harness_changed_files: list[str] = Field(default_factory=list)  # tracked code that differs from the commit
    harness_version: str | None = None
    command: list[str] = Field(default_factory=list)
    python: str | None = None
    platform: str | None = None
    machine: str | None = None
    cpu_count: int | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)


class ProvenanceRecord(HostFacts):
    """Where a run came from: the harness and host that started it (or, for an ingested run,
    the files it was imported from)."""

    FILE: ClassVar[str] = "provenance.json"
    image: ImageRecord | None = None
    # Ingested runs
    ingested_from: str | None = None
    ingested_at: str | None = None
    kind: str | None = None
    files: list[dict[str, str]] = Field(default_factory=list)
    sha256: dict[str, str] = Field(default_factory=dict)
    seed_result: dict[str, Any] | None = None
    ingested_by: dict[str, Any] | None = None


class OptimWrapperUsed(Strict):
    """The optimizer wrapper asked for and the one the Runner built (mmengine forces AMP on SoCs
    older than 910B whatever the config says)."""

    requested: str
    used: str
    changed_by_mmengine: bool


class WorkerEnvRecord(HostFacts):
    """What the training process itself ran with (inside the container, under Docker)."""

    FILE: ClassVar[str] = "worker_env.json"
    torch_threads: int | None = None
    cuda: str | None = None
    devices: list[str] | None = None
    ascend_versions: dict[str, str] | None = None
    # What the accelerator really was (harness.worker.device_info): NPU name, SoC, CANN, driver,
    # torch_npu, whether mmengine forces AMP; the HCCL_*/ASCEND_* settings in effect.
    npu: dict[str, Any] | None = None
    environment_settings: dict[str, str] = Field(default_factory=dict)
    optim_wrapper: OptimWrapperUsed | None = None


# ---------------------------------------------------------------------------------------------
# result.json


class Metrics(Strict):
    aAcc: float | None = None
    mIoU: float | None = None
    mAcc: float | None = None


class DeviceCount(Strict):
    kind: str
    count: int


class ToleranceRecord(Strict):
    """How far a number may be from the reference (``harness.planning.recipe.Tolerance``)."""

    fps_ratio: float
    accuracy_points: float
    warn_points: float
    seed_spread_points: float | None = None  # absent in run folders older than ``harness run --repeat``


class ReferenceRow(Strict):
    label: str
    source: str | None = None
    conditions: str | None = None
    fps: float | None = None
    aAcc: float | None = None
    mIoU: float | None = None
    mAcc: float | None = None
    compare: str = "best"
    tolerance: ToleranceRecord | None = None


class TrainPoint(Strict):
    iter: int
    lr: float | None = None
    time: float | None = None
    data_time: float | None = None
    loss: float | None = None


class Evaluation(Strict):
    iteration: int | None = None
    aAcc: float | None = None
    mIoU: float | None = None
    mAcc: float | None = None
    source: str | None = None


class Verdict(Strict):
    """A measured number against the reference's (``harness.results.verdict`` judges them)."""

    metric: str
    status: str  # PASS | WARN | FAIL | MISSING | NONE
    measured: float | None = None
    reference: float | None = None
    reason: str = ""


class ResultProvenance(Strict):
    log_files: list[str] = Field(default_factory=list)
    dataset_fingerprint: str | None = None
    dataset_check: str | None = None
    dataset_check_skipped: bool | None = None
    image_id: str | None = None
    ingested_from: str | None = None


class RunResult(Record):
    """The parsed numbers of a run, how each is defined, where each came from, and the verdicts
    against the recipe's reference. Rebuilt from the stored logs at any time."""

    FILE: ClassVar[str] = "result.json"
    V0_ONLY: ClassVar[tuple[str, ...]] = ("version",)
    run_id: str
    recipe: str
    mode: str
    device: DeviceCount
    batch_per_device: int | None = None
    reference: ReferenceRow
    provenance: ResultProvenance = Field(default_factory=ResultProvenance)
    parse_error: str | None = None
    iterations: int | None = None
    max_iters: int | None = None
    mean_iter_time_s: float | None = None
    fps: float | None = None
    fps_seed_definition: float | None = None
    final: Metrics | None = None
    best: Metrics | None = None
    per_class: dict[str, Any] = Field(default_factory=dict)
    evaluations_count: int | None = None
    final_loss: float | None = None
    definitions: dict[str, str] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    partial: bool = False
    log_format: str | None = None
    train: list[TrainPoint] = Field(default_factory=list)
    evaluations: list[Evaluation] = Field(default_factory=list)
    compared: str = "best"
    verdicts: list[Verdict] = Field(default_factory=list)

    def compared_metrics(self) -> Metrics:
        """The evaluation the verdicts judge (``best`` or ``final``), empty when there is none."""
        return (self.best if self.compared == "best" else self.final) or Metrics()

    def verdict(self, metric: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.metric == metric), None)


# ---------------------------------------------------------------------------------------------
# group.json (results/groups/<group-id>/): the runs of one `harness run --repeat N`


class GroupMember(Strict):
    """One seed of a group: its run (None when it never got a run folder) and how it ended."""

    seed: int
    run_id: str | None = None
    state: Literal["pending", "created", "running", "succeeded", "failed", "interrupted"] = "pending"
    exit_code: int | None = None
    reason: str | None = None


class GroupRecord(Record):
    """A group of runs of one recipe that differ only in ``train.seed``."""

    FILE: ClassVar[str] = "group.json"
    group_id: str
    recipe: str
    recipe_path: str | None = None
    sets: list[str] = Field(default_factory=list)  # the --set overrides every member ran with
    seeds: list[int]
    members: list[GroupMember] = Field(default_factory=list)
    state: Literal["running", "finished", "interrupted"] = "running"
    created: str | None = None
    updated: str | None = None

    def finished_members(self) -> list[GroupMember]:
        return [m for m in self.members if m.state == "succeeded" and m.run_id]


# ---------------------------------------------------------------------------------------------
# bundle.json: the manifest at the top of a ``harness bundle`` tarball (not a run-folder file)


class BundleFile(Strict):
    """One file of a bundle: its path inside the tarball, size in bytes and sha256."""

    path: str
    size: int
    sha256: str


class ImageLockRef(Strict):
    """The package locks of the run's device kind (``docker/<kind>/requirements-*.lock``), bundled
    under ``context/<run-id>/locks/``, and their digest (``harness.executors.images.lock_digest``)."""

    kind: str
    digest: str | None = None
    files: list[str] = Field(default_factory=list)
    note: str = ""


class BundleRecord(Record):
    """What a bundle holds and the checksum of every file in it; written by ``harness bundle``
    and checked by ``harness verify``. Deterministic: no time stamps, so the same run gives the
    same bytes. A group bundle lists its member runs and carries the group record as an extra."""

    FILE: ClassVar[str] = "bundle.json"
    format: Literal["pspnet-repro-bundle"] = "pspnet-repro-bundle"
    made_by: dict[str, Any] = Field(default_factory=dict)  # harness_version, harness_commit
    runs: list[str]  # run ids; each run folder is under runs/<run-id>/
    group: str | None = None  # the group id of a group bundle
    extra_records: list[str] = Field(default_factory=list)  # e.g. the group record, by path
    image_locks: dict[str, ImageLockRef] = Field(default_factory=dict)  # by run id
    dataset_manifests: dict[str, str] = Field(default_factory=dict)  # run id -> path in the bundle
    left_out: list[str] = Field(default_factory=list)  # what is deliberately not bundled, and why
    files: list[BundleFile] = Field(default_factory=list)


RECORDS: dict[str, type[Record]] = {
    model.__name__: model
    for model in (RunStatus, PlanRecord, JobRecord, DatasetRecord, RecipeSourceRecord, ProvenanceRecord,
                  WorkerEnvRecord, RunResult, GroupRecord, BundleRecord)
}
RECORD_FILES = {model.FILE for model in RECORDS.values()}


# ---------------------------------------------------------------------------------------------
# Reading: JSON text -> model, with the migration from version 0


def _where(error: ValidationError) -> str:
    return f"field {first_problem(error)}"


CURRENT_VERSION_MARK = f'"schema_version": {SCHEMA_VERSION}'  # as dump_record writes it


def parse_record(model: type[Record], text: str, *, where: str) -> Record:
    """``text`` (a record file's content) as ``model``, or DamagedRecord naming ``where``."""
    if CURRENT_VERSION_MARK in text:
        # The common case, a record of this version: pydantic reads and validates the JSON in one
        # pass (~30 % less time over a report of thousands of runs). Whatever it refuses takes the
        # path below, which names the problem.
        try:
            return model.model_validate_json(text)
        except ValidationError:
            pass
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedRecord(f"{where}: damaged record: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DamagedRecord(f"{where}: damaged record: expected a JSON object, found {type(data).__name__}")
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        raise DamagedRecord(
            f"{where}: schema_version {version!r} is not one this harness reads (it reads {SCHEMA_VERSION} and the "
            "unversioned layout 0); use the harness that wrote it"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DamagedRecord(f"{where}: damaged record: {_where(exc)}") from None


def read_record(model: type[Record], path: Path) -> Record | None:
    """The record in ``path``, None when the file does not exist; DamagedRecord when it cannot be read."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRecord(f"{path}: unreadable ({exc.__class__.__name__})") from None
    return parse_record(model, text, where=str(path))


def dump_record(record: Record) -> str:
    return record.model_dump_json(indent=2) + "\n"


def json_schemas() -> dict[str, dict]:
    """Each record's JSON schema, by model name."""
    return {name: model.model_json_schema() for name, model in RECORDS.items()}
