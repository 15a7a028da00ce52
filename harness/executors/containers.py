"""Container plumbing shared by the one-container run (``docker``) and the multi-node group
(``docker_nodes``): a spec as docker-py arguments, a container's output as log lines, its removal.
Both executors import this module; neither imports the other's helpers.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness.core.errors import EnvironmentNotReady
from harness.planning.spec import ContainerSpec

STOP_TIMEOUT_S = 10


# The engine .ci/docker-up.sh starts; used when neither DOCKER_HOST nor the system socket is there.
PROJECT_SOCKET = Path(os.environ.get("PSPNET_DOCKER_RUN", "/run/pspnet-repro-docker")) / "docker.sock"
SYSTEM_SOCKET = Path("/var/run/docker.sock")


def engine_url() -> str | None:
    """Where to find the engine: DOCKER_HOST, the system socket, then the project's own."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    for sock in (SYSTEM_SOCKET, PROJECT_SOCKET):
        if sock.exists():
            return f"unix://{sock}"
    return None


class EngineLost(RuntimeError):
    """The engine stopped answering while a run was on it (dockerd stopped or restarted): the run
    is failed with this one line as its reason; what the engine left is removed by the next attempt."""


def engine_errors() -> tuple[type[BaseException], ...]:
    """What docker-py raises when the engine is gone or shutting down: its own errors (a 500 while
    it stops), and the HTTP client's (the socket closed)."""
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError)


def lost(exc: BaseException) -> EngineLost:
    detail = " ".join(str(exc).split())[:200]
    return EngineLost(f"the Docker engine at {engine_url()} stopped answering during the run "
                      f"({exc.__class__.__name__}: {detail})")


class PreflightError(EnvironmentNotReady):
    """A spec that cannot start; ``str()`` has one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------------
# Spec -> docker-py arguments (pure)


def container_kwargs(spec: ContainerSpec) -> dict:
    """``client.containers.create`` arguments for ``spec``; None-valued options are left out."""
    import docker.types

    if spec.privileged or spec.cap_add:
        # Never: not needed for NPUs/GPUs, and the project's engines refuse it anyway.
        raise PreflightError(["containers never run privileged or with added capabilities"])
    kwargs = {
        "image": spec.image,
        "command": list(spec.command),
        "environment": {k: str(v) for k, v in spec.environment.items()},
        "devices": [m.as_docker() for m in spec.devices],
        # List form ("host:container:mode"), not a dict keyed by host path: the same host path may
        # be bound at two places.
        "volumes": [f"{b.host_path}:{b.container_path}:{'ro' if b.read_only else 'rw'}" for b in spec.binds],
        "shm_size": spec.shm_size,
        "working_dir": spec.working_dir,
        "network_mode": spec.network_mode,
        "hostname": spec.hostname,
        "runtime": spec.runtime,
        "user": spec.user,
        "ipc_mode": spec.ipc_mode,
        "privileged": False,
        # tini as PID 1: forwards SIGTERM to the worker (a bare python PID 1 ignores it, so a stop
        # would wait for SIGKILL) and reaps orphaned data-loader processes.
        "init": True,
        "detach": True,
    }
    if spec.gpu_device_ids:
        kwargs["device_requests"] = [
            docker.types.DeviceRequest(device_ids=list(spec.gpu_device_ids), capabilities=[["gpu"]])
        ]
    return {k: v for k, v in kwargs.items() if v is not None}


class ContainerLog:
    """Splits the container's byte stream into lines for the log file and the callback."""

    def __init__(self, log_path: Path, on_line: Callable[[str], None] | None, *, also: Path | None = None):
        from harness.core.output import LineWriter

        self._log = LineWriter(log_path)
        self._also = LineWriter(also) if also is not None else None  # node 0's lines, also to train.log
        self._on_line = on_line
        self._pending = b""
        self.received = 0  # bytes seen so far: the log is a prefix of the engine's stored log

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for raw in lines:
            self._emit(raw)

    def _emit(self, raw: bytes) -> None:
        # Line-buffered: a crash or Ctrl-C keeps everything seen so far; a full disk is noted.
        text = raw.decode("utf-8", errors="replace") + "\n"
        self._log.write(text)
        if self._also is not None:
            self._also.write(text)
        if self._on_line:
            self._on_line(raw.decode("utf-8", errors="replace").rstrip("\r"))

    def close(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = b""
        self._log.close()
        if self._also is not None:
            self._also.close()

    @property
    def disk_full(self) -> bool:
        return self._log.disk_full or bool(self._also and self._also.disk_full)


def follow(container, sink: ContainerLog) -> None:
    """Until the container's output ends. A stream cut by an engine that stops ends the follow
    quietly (it also runs in a thread per node): the caller's next engine call says what happened."""
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            sink.feed(chunk)
    except engine_errors():
        pass


def catch_up(container, sink: ContainerLog) -> None:
    # A follow stream can end before the engine has stored the last, unterminated line (a race
    # seen with dockerd 20.10); what it missed is the stored log past what we received.
    stored = container.logs(stdout=True, stderr=True)
    if len(stored) > sink.received:
        sink.feed(stored[sink.received:])


def discard(container, *, stop: bool) -> None:
    """Stop (if asked) and remove; an engine that is gone leaves it for the run's next attempt."""
    try:
        if stop:
            container.stop(timeout=STOP_TIMEOUT_S)
        container.remove(force=True)
    except engine_errors():  # NotFound (gone already) is one of them
        pass
