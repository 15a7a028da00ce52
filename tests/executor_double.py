"""A test double executor, defined here and not in the package: adding an executor is one class
registered with ``harness.executors.register``. It runs nothing; it writes a few log lines and
ends as a multi-node executor whose second node failed would."""
from __future__ import annotations

from typing import Any, ClassVar

from harness.core.errors import EnvironmentNotReady
from harness.executors import register
from harness.executors.base import Outcome


@register
class NodeFailureDouble:
    name: ClassVar[str] = "double"
    plan_layout: ClassVar[str] = "local"
    engine_up: ClassVar[bool] = True
    calls: ClassVar[list[str]] = []

    def prepare(self, plan):
        self.calls.append("prepare")
        if not self.engine_up:
            raise EnvironmentNotReady("double: its engine is down; start it first")
        return plan

    def start(self, plan, run, on_line) -> None:
        self.calls.append("start")
        self._log = run.log_file
        with open(self._log, "a") as log:
            for line in ("double: node-a started", "double: node-b started", "double: node-b exited 7"):
                log.write(line + "\n")
                on_line(line)

    def wait(self) -> Outcome:
        self.calls.append("wait")
        return Outcome(exit_code=7, failed_node="node-b", details={"nodes": ["node-a", "node-b"]})

    def stop(self) -> None:
        self.calls.append("stop")

    def describe(self) -> dict[str, Any]:
        return {"image": {"tag": "double:1", "image_id": "sha256:double", "harness_version": "0.1.0+gdouble"}}
