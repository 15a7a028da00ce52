"""Run a ``ContainerSpec`` on a Docker engine through docker-py (never through shell strings).

``run_container`` creates the container exactly as the spec says, streams its output line by line
to a callback and a log file, waits, records the ID of the image actually run and always removes
the container. ``preflight`` finds the mistakes that would otherwise surface as an obscure engine
error halfway into a launch (missing image, device node or bind source).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from pathlib import Path

from harness.core.errors import EnvironmentNotReady
from harness.executors import register
from harness.executors.base import Executor, LineSink, Outcome, PlanLayout
from harness.executors.containers import (STOP_TIMEOUT_S, ContainerLog, PreflightError,
                                          catch_up, container_kwargs, discard, engine_errors, engine_url, follow, lost)
from harness.executors.images import ImageError, missing_image_message
from harness.planning.spec import ContainerSpec
from harness.store.lifeline import ENV_RUN_LOCK, ENV_TRAINER_LOCK

class EngineUnavailable(EnvironmentNotReady):
    """No Docker engine answers; ``str()`` says how to start one (exit 3)."""


@dataclass(frozen=True)
class DockerOutcome:
    exit_code: int
    image_id: str
    container_id: str
    oom_killed: bool


def connect(timeout: int = 120):
    """A pinged docker-py client, or EngineUnavailable with the command that starts an engine."""
    import docker
    import docker.errors

    url = engine_url()
    hint = "start one with `bash .ci/docker-up.sh` and `source .ci-state/docker.env`"
    if url is None:
        raise EngineUnavailable(f"no Docker engine: DOCKER_HOST is unset and no socket exists; {hint}")
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise EngineUnavailable(f"Docker engine at {url} does not answer ({exc}); {hint}") from None
    return client


# ---------------------------------------------------------------------------------------------
# Preflight


def preflight_problems(spec: ContainerSpec, *, image_present: bool, runtimes: set[str] | None = None) -> list[str]:
    """Every reason ``spec`` cannot start on this host (pure but for path checks)."""
    problems = []
    if not image_present:
        problems.append(missing_image_message(spec.image))
    for dev in spec.devices:
        if not os.path.exists(dev.host_path):
            problems.append(f"device {dev.host_path} does not exist on this host (wanted at {dev.container_path})")
    for bind in spec.binds:
        if not os.path.exists(bind.host_path):
            problems.append(f"bind source {bind.host_path} does not exist on this host (for {bind.container_path})")
    if spec.runtime and runtimes is not None and spec.runtime not in runtimes:
        problems.append(
            f"the engine has no '{spec.runtime}' runtime (it has: {', '.join(sorted(runtimes)) or 'none'});"
            " install it (e.g. the Ascend Docker Runtime) or use plain device mounts"
        )
    if spec.privileged or spec.cap_add:
        problems.append("containers never run privileged or with added capabilities")
    return problems


def preflight(spec: ContainerSpec, client) -> None:
    """Raise PreflightError listing every problem (missing image, device node, bind source...)."""
    from harness.executors.images import image_exists

    runtimes = set(client.info().get("Runtimes", {}).keys())
    problems = preflight_problems(spec, image_present=image_exists(client, spec.image), runtimes=runtimes)
    if problems:
        raise PreflightError(problems)
    for warning in spec.warnings:  # optional pieces the host lacks: said, never a refusal
        print(f"harness: warning: {warning}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Running


def _outcome(container, status: dict) -> DockerOutcome:
    container.reload()
    state = container.attrs.get("State", {})
    return DockerOutcome(
        exit_code=int(status.get("StatusCode", state.get("ExitCode", -1))),
        image_id=container.attrs.get("Image", ""),  # the ID actually run, not the tag asked for
        container_id=container.id,
        oom_killed=bool(state.get("OOMKilled", False)),
    )


def run_container(
    spec: ContainerSpec,
    *,
    log_path: str | os.PathLike,
    on_line: Callable[[str], None] | None = None,
    client=None,
) -> DockerOutcome:
    """Run ``spec`` to completion; the container is removed whatever happens."""
    import docker.errors

    client = client or connect()
    try:
        client.images.get(spec.image)
    except docker.errors.ImageNotFound:
        raise ImageError(missing_image_message(spec.image)) from None
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    container = client.containers.create(**container_kwargs(spec))
    sink = ContainerLog(log_path, on_line)
    interrupted = False
    try:
        container.start()
        follow(container, sink)
        status = container.wait()
        catch_up(container, sink)
        return _outcome(container, status)
    except KeyboardInterrupt:
        interrupted = True  # stop politely (SIGTERM, then SIGKILL after the timeout), then remove
        raise
    finally:
        sink.close()
        discard(container, stop=interrupted)


# ---------------------------------------------------------------------------------------------
# The executor


class DockerExecutor(Executor):
    """One container per run on a Docker engine (docker-py); the container is always removed.
    A multi-node plan runs one container per node on the run's bridge network (``docker_nodes``)."""

    name: ClassVar[str] = "docker"
    plan_layout: ClassVar[PlanLayout] = PlanLayout.CONTAINER
    multi_node: ClassVar[bool] = True  # starts every node of a multi-node plan (on one engine)
    requires_image: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self._client = None
        self._container = None
        self._nodes = None  # docker_nodes.NodeGroup of a multi-node run
        self._sink: ContainerLog | None = None
        self._image: dict[str, Any] = {}

    def prepare(self, plan):
        """Engine, the image the recipe names (resolved to the build of this checkout), devices
        and bind sources; returns the plan with the image pinned to its content tag."""
        from harness.executors.images import resolve_image

        if plan.container is None:
            raise EnvironmentNotReady(f"recipe {plan.recipe_name}: the docker executor needs a container plan")
        self._client = self._client or connect()
        resolved = resolve_image(self._client, plan.container.image)
        self._image = resolved.record()
        plan = replace(plan, container=replace(plan.container, image=resolved.run_tag))
        preflight(plan.container, self._client)
        return plan

    def start(self, plan, run, on_line: LineSink) -> None:
        from harness.planning.plan import CONTAINER_RUN_DIR

        if self._client is None:
            plan = self.prepare(plan)
        spec = plan.container
        environment = {**spec.environment, ENV_RUN_LOCK: f"{CONTAINER_RUN_DIR}/{run.lock_file.name}",
                       ENV_TRAINER_LOCK: f"{CONTAINER_RUN_DIR}/{run.trainer_lock_file.name}"}
        spec = replace(spec, environment=environment)
        if plan.nodes > 1:
            self._start_nodes(plan, run, on_line, lifeline={k: environment[k] for k in (ENV_RUN_LOCK, ENV_TRAINER_LOCK)})
            return
        self._sink = ContainerLog(run.log_file, on_line)
        self._container = self._client.containers.create(**container_kwargs(spec))
        self._container.start()

    def _start_nodes(self, plan, run, on_line: LineSink, lifeline: dict[str, str]) -> None:
        from harness.executors.docker_nodes import NodeGroup
        from harness.planning.plan import node_containers

        specs = tuple(replace(spec, environment={**spec.environment, **lifeline}) for spec in node_containers(plan))
        self._nodes = NodeGroup(self._client, run.run_id, plan.container.network_mode)
        self._nodes.start(specs, [run.node_log_file(i) for i in range(plan.nodes)], run.log_file, on_line)

    def wait(self) -> Outcome:
        if self._nodes is not None:
            return self._nodes.wait()
        assert self._container is not None and self._sink is not None, "start() first"
        try:
            follow(self._container, self._sink)
            status = self._container.wait()
            catch_up(self._container, self._sink)
            done = _outcome(self._container, status)
        except engine_errors() as exc:
            raise lost(exc) from None
        self._finish(stop=False)
        return Outcome(exit_code=done.exit_code, image_id=done.image_id, oom_killed=done.oom_killed,
                       details={"container_id": done.container_id, "disk_full": self._disk_full})

    _disk_full = False

    def _finish(self, *, stop: bool) -> None:
        if self._sink is not None:
            self._sink.close()
            self._disk_full = self._sink.disk_full
            self._sink = None
        if self._container is not None:
            container, self._container = self._container, None
            discard(container, stop=stop)

    def stop(self) -> None:
        """Stop politely (SIGTERM, SIGKILL after the timeout), keep what it printed, remove it."""
        if self._nodes is not None:
            self._nodes.stop()
        if self._container is not None and self._sink is not None:
            try:
                self._container.stop(timeout=STOP_TIMEOUT_S)
                catch_up(self._container, self._sink)
            except Exception:  # the engine may be gone too: removing is all that is left to try
                pass
        self._finish(stop=True)

    def describe(self) -> dict[str, Any]:
        return {"image": self._image} if self._image else {}


register(DockerExecutor)
