"""The one interface every executor implements, and the one outcome every executor returns.

``execute.py`` drives any executor the same way::

    executor = get_executor(name)()
    executor.prepare(plan)            # pre-flight; raises EnvironmentNotReady, starts nothing
    executor.start(plan, run, on_line)
    outcome = executor.wait()         # streams the output into run.log_file and on_line
    executor.stop()                   # on Ctrl-C / timeout / harness shutdown; idempotent
    executor.describe()               # what to record with the run (image ID, nodes, ...)

A new executor (Slurm, multi-node Docker) is one module with one class registered with
``harness.executors.register``; nothing else in the harness names it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.planning.plan import Plan
    from harness.store.runs import RunDir

# Which paths ``build_plan`` writes into the job: the host's ("local") or the container's ("docker").
PlanLayout = Literal["local", "docker"]
LineSink = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, as far as the executor knows."""

    exit_code: int
    interrupted: bool = False  # Ctrl-C / SIGTERM reached the harness
    timed_out: bool = False  # the recipe's timeout_minutes ran out
    error: str | None = None  # the executor itself failed (engine gone, disk full): one line
    oom_killed: bool = False
    image_id: str | None = None  # the image actually run (containers)
    failed_node: str | None = None  # multi-node executors: the node that failed first
    reason: str | None = None  # why it ended, where the executor knows better than an exit code (a scheduler's word)
    details: dict[str, Any] = field(default_factory=dict)  # anything else worth recording


@runtime_checkable
class Executor(Protocol):
    name: ClassVar[str]
    plan_layout: ClassVar[PlanLayout]
    # Starts every node of a ``device.nodes > 1`` plan itself (the CLI refuses such a plan otherwise;
    # absent means False). Options given on the command line are keyword arguments of the constructor,
    # returned by ``options()`` to be recorded with the plan, so that ``--resume`` rebuilds the executor.
    # An optional pure ``arrange(plan) -> plan`` lays the launch out the executor's way (Slurm: the
    # rank and master from its variables); execute.planned applies it for `harness plan` and runs alike.
    multi_node: ClassVar[bool]

    def prepare(self, plan: "Plan") -> None:
        """Check that ``plan`` can start here (engine, image, devices); raise EnvironmentNotReady
        (exit 3) naming what is missing. Starts nothing and writes nothing."""

    def start(self, plan: "Plan", run: "RunDir", on_line: LineSink) -> None:
        """Launch the plan; output goes to ``run.log_file`` (appended) and ``on_line``."""

    def wait(self) -> Outcome:
        """Stream the output until the training ends; return how it ended."""

    def stop(self) -> None:
        """Stop and remove everything started (idempotent, safe before start)."""

    def describe(self) -> dict[str, Any]:
        """What this executor wants recorded with the run (e.g. ``{"image": {...}}``)."""
