"""A test double executor, defined here and not in the package: adding an executor is one module
with one ``harness.executors.base.Executor`` subclass registered with ``harness.executors.register``
(tests/test_executors_declared.py places this file among the package's modules). It runs nothing; it
writes a few log lines and ends as a multi-node executor whose second node failed would."""
from __future__ import annotations

import re
from typing import Any, ClassVar

from harness.core.errors import BadInput, EnvironmentNotReady
from harness.executors import register
from harness.executors.base import Executor, ExecutorOption, Outcome


def node_word(value: str) -> str:
    if not re.fullmatch(r"node-[a-z]", value):
        raise BadInput(f"--double-failing-node {value[:40]!r}: expected node-<letter>, e.g. node-b")
    return value


@register
class NodeFailureDouble(Executor):
    """Runs nothing: a test double whose chosen node fails."""

    name: ClassVar[str] = "double"
    run_options: ClassVar[tuple[ExecutorOption, ...]] = (
        ExecutorOption("failing_node", "the node the double reports as failed", node_word,
                       flag="--double-failing-node", metavar="NODE"),
    )
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
        failing = self.options().get("failing_node", "node-b")
        with open(self._log, "a") as log:
            for line in ("double: node-a started", "double: node-b started", f"double: {failing} exited 7"):
                log.write(line + "\n")
                on_line(line)

    def wait(self) -> Outcome:
        self.calls.append("wait")
        return Outcome(exit_code=7, failed_node=self.options().get("failing_node", "node-b"),
                       details={"nodes": ["node-a", "node-b"]})

    def stop(self) -> None:
        self.calls.append("stop")

    def describe(self) -> dict[str, Any]:
        return {"image": {"tag": "double:1", "image_id": "sha256:double", "harness_version": "0.1.0+gdouble"}}
