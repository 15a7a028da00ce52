"""The worker's input, ``Job`` (``harness.store.records``: one model, written as ``JobRecord``)."""
from __future__ import annotations

from pathlib import Path

from harness.store.records import DamagedRecord, Job, JobRecord, TrainSettings, read_record

__all__ = ["Job", "TrainSettings", "JOB_FILE", "read_job"]
JOB_FILE = JobRecord.FILE  # where the harness writes the job in a run folder


def read_job(path: Path) -> Job:
    """The job of a job.json (a run folder's, as the worker sees it); damage is one line."""
    record = read_record(JobRecord, Path(path))
    if record is None:
        raise DamagedRecord(f"{path}: missing (the worker's job)")
    return record.job()  # type: ignore[attr-defined]
