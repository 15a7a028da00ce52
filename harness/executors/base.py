"""The one interface every executor implements, and the one outcome every executor returns.

``execute.py`` drives any executor the same way::

    executor = get_executor(name)(**options)
    plan = executor.prepare(plan)     # pre-flight; raises EnvironmentNotReady, starts nothing
    executor.start(plan, run, on_line)
    outcome = executor.wait()         # streams the output into run.log_file and on_line
    executor.stop()                   # on Ctrl-C / timeout / harness shutdown; idempotent
    executor.describe()               # what to record with the run (image ID, nodes, ...)

A new executor (Slurm, multi-node Docker) is one module under ``harness/executors/`` with one
subclass of ``Executor`` registered with ``harness.executors.register``; nothing else in the
harness names it: the CLI lists it and its ``run_options`` (as torchx schedulers declare run_opts).
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.core.errors import BadInput
from harness.planning.spec import PlanLayout

if TYPE_CHECKING:
    from harness.planning.plan import Plan
    from harness.planning.recipe import LoadedRecipe
    from harness.store.runs import RunDir

__all__ = ["Executor", "ExecutorOption", "LineSink", "Outcome", "PlanLayout"]
LineSink = Callable[[str], None]


@dataclass(frozen=True)
class ExecutorOption:
    """One option of an executor's constructor: a ``harness run`` flag (``flag``), recorded in
    plan.json's executor_options under ``name``; ``--resume`` checks a recorded value with the same
    ``validate`` (which raises BadInput naming the flag). ``flag`` None: the executor takes it from
    the recipe (``options_for``), never from the command line."""

    name: str
    help: str
    validate: Callable[[str], object] | None = None
    flag: str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


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


class Executor(abc.ABC):
    """Every member but start/wait/stop has a working default: one node, host paths, no options."""

    name: ClassVar[str]
    plan_layout: ClassVar[PlanLayout] = PlanLayout.HOST
    # Starts every node of a ``device.nodes > 1`` plan itself (the CLI refuses such a plan otherwise).
    multi_node: ClassVar[bool] = False
    requires_image: ClassVar[bool] = False  # runs the recipe's image: a recipe without one is bad input
    run_options: ClassVar[tuple[ExecutorOption, ...]] = ()
    run_options_help: ClassVar[str] = ""  # what the options' group says in `harness run --help`

    def __init__(self, **options: str | None) -> None:
        """Options given on the command line are keyword arguments, returned by ``options()`` to be
        recorded with the plan, so that ``--resume`` rebuilds the executor."""
        given = {key: value for key, value in options.items() if value is not None}
        self.check_options(given)
        self._options = given

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Each option checked by its declared validator: a fresh command line and a recorded plan alike."""
        declared = {option.name: option for option in cls.run_options}
        for key, value in options.items():
            if key not in declared:
                raise BadInput(f"executor_options: unknown option {key!r} for the {cls.name} executor "
                               f"(expected: {', '.join(declared) or 'none'})")
            if not isinstance(value, str):
                raise BadInput("executor_options: every option's value must be text")
            option = declared[key]
            if option.choices is not None and value not in option.choices:
                raise BadInput(f"{option.flag or key} {value!r}: expected one of {', '.join(option.choices)}")
            if option.validate is not None:
                option.validate(value)

    @classmethod
    def options_for(cls, given: dict[str, str], loaded: "LoadedRecipe") -> dict[str, str]:
        """The constructor's options from the command line's ``given`` and the recipe."""
        return given

    def options(self) -> dict[str, str]:
        """The options this executor was built with, recorded in plan.json."""
        return dict(self._options)

    def worker_in_container(self) -> bool:
        """Whether the worker runs in the recipe's image (tracking checks then skip this host)."""
        return self.plan_layout.in_container

    def arrange(self, plan: "Plan") -> "Plan":
        """The plan laid out the executor's way (Slurm: the rank and master from its variables);
        pure, so that `harness plan` shows what a run records."""
        return plan

    def prepare(self, plan: "Plan") -> "Plan":
        """Check that ``plan`` can start here (engine, image, devices); raise EnvironmentNotReady
        (exit 3) naming what is missing; return the plan to run (an image pinned). Starts nothing
        and writes nothing."""
        return plan

    @abc.abstractmethod
    def start(self, plan: "Plan", run: "RunDir", on_line: LineSink) -> None:
        """Launch the plan; output goes to ``run.log_file`` (appended) and ``on_line``."""

    @abc.abstractmethod
    def wait(self) -> Outcome:
        """Stream the output until the training ends; return how it ended."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop and remove everything started (idempotent, safe before start)."""

    def describe(self) -> dict[str, Any]:
        """What this executor wants recorded with the run (e.g. ``{"image": {...}}``)."""
        return {}
