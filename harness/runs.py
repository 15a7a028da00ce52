"""The run store: one folder per run under ``results/runs/<run-id>/``.

A run folder holds the recipe as run, the plan, the job, the full log, the mmseg work_dir, its
status and, once parsed, ``result.json``. Run ids are unique (the folder is created with
``mkdir``, which fails if it exists) and can never point outside the store.
"""
from __future__ import annotations

import json
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.fileio import write_json_atomic, write_text_atomic
from harness.processes import pid_alive

RUNS_DIR = "runs"
RUN_ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_.-]{1,64}-[0-9a-f]{6}$")
STATES = ("created", "running", "succeeded", "failed", "interrupted")


class RunStoreError(Exception):
    pass


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_id(self) -> str:
        return self.path.name

    recipe_file = property(lambda self: self.path / "recipe.yaml")
    plan_file = property(lambda self: self.path / "plan.json")
    status_file = property(lambda self: self.path / "status.json")
    log_file = property(lambda self: self.path / "train.log")
    result_file = property(lambda self: self.path / "result.json")
    work_dir = property(lambda self: self.path / "work_dir")

    def read_json(self, name: str) -> dict | None:
        path = self.path / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None

    def status(self) -> dict:
        return self.read_json("status.json") or {"state": "unknown"}

    def effective_state(self) -> str:
        """The recorded state, except that a 'running' run whose harness process is gone (same
        host, pid no longer alive: killed with SIGKILL, machine rebooted) shows as 'stale'."""
        status = self.status()
        state = status.get("state", "unknown")
        pid = status.get("pid")
        if state == "running" and isinstance(pid, int) and status.get("host") == socket.gethostname() and not pid_alive(pid):
            return "stale"
        return state

    def set_status(self, state: str, **details: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        current = self.status()
        current.update(details, state=state, updated=utc_now())
        current.setdefault("created", current["updated"])
        write_json_atomic(self.status_file, current)

    def write_json(self, name: str, data: Any) -> None:
        write_json_atomic(self.path / name, data)

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path / name, text)


class RunStore:
    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)
        self.runs_dir = self.results_dir / RUNS_DIR

    def create(self, recipe_name: str) -> RunDir:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        for _ in range(16):
            run_id = f"{stamp}-{recipe_name}-{secrets.token_hex(3)}"
            path = self.runs_dir / run_id
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return RunDir(path)
        raise RunStoreError(f"{self.runs_dir}: could not create a unique run folder")

    def get(self, run_id: str) -> RunDir:
        if not RUN_ID_PATTERN.match(run_id):
            raise RunStoreError(f"run id {run_id!r}: expected an id like 20261125T201500Z-smoke_cpu-a1b2c3")
        path = self.runs_dir / run_id
        if not path.is_dir():
            raise RunStoreError(f"run id {run_id!r}: no such run in {self.runs_dir}")
        return RunDir(path)

    def all(self) -> list[RunDir]:
        if not self.runs_dir.is_dir():
            return []
        return [RunDir(p) for p in sorted(self.runs_dir.iterdir()) if p.is_dir() and RUN_ID_PATTERN.match(p.name)]
