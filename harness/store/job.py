"""The worker's input: everything the training process needs, as seen from where it runs.

The host writes it to ``<run dir>/job.json``; the worker (locally or in a container) reads it.
Paths in it are the worker's paths (container paths under Docker).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.fileio import write_text_atomic
from harness.store.records import DamagedRecord, JobRecord, dump_record, read_record

JOB_FILE = JobRecord.FILE  # where the harness writes the job in a run folder


@dataclass(frozen=True)
class TrainSettings:
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


@dataclass(frozen=True)
class Job:
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
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    # harness.planning.tracking.job_tracking: the vis backends to stream to (None: mmseg's local one only)
    tracking: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        data = dict(data)
        data["train"] = TrainSettings(**data["train"])
        return cls(**data)

    def write(self, path: Path) -> None:
        write_text_atomic(Path(path), dump_record(JobRecord.from_job(self)))

    @classmethod
    def read(cls, path: Path) -> "Job":
        """The job of a job.json (a run folder's, as the worker sees it); damage is one line."""
        record = read_record(JobRecord, Path(path))
        if record is None:
            raise DamagedRecord(f"{path}: missing (the worker's job)")
        return cls.from_dict(record.model_dump(exclude={"schema_version"}))
