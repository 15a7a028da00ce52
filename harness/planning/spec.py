"""The plan's building blocks: what to launch and, for containers, how.

Pure data. Everything here serialises to JSON (``to_dict``) so that a plan can be printed,
stored with a run and compared in tests without Docker.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class PlanLayout(str, Enum):
    """Where the worker sees its paths, as each executor class declares (``plan_layout``): this
    host's own paths, the container's fixed ones, or this host's paths on a scheduler's nodes
    (which are other machines). The values are the words plans were built with."""

    HOST = "local"
    CONTAINER = "docker"
    SCHEDULED = "slurm"

    @property
    def in_container(self) -> bool:
        return self is PlanLayout.CONTAINER

    @property
    def on_this_host(self) -> bool:
        return self is not PlanLayout.SCHEDULED


@dataclass(frozen=True)
class DeviceMapping:
    """A host device node made visible inside the container (``docker run --device``)."""

    host_path: str
    container_path: str
    permissions: str = "rwm"

    def as_docker(self) -> str:
        return f"{self.host_path}:{self.container_path}:{self.permissions}"


@dataclass(frozen=True)
class BindMount:
    host_path: str
    container_path: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the Docker executor needs to start one training container.

    ``gpu_device_ids`` becomes a Docker device request (``--gpus device=...``); ``runtime`` is
    set for the Ascend Docker Runtime, which then mounts the driver itself.
    """

    image: str
    command: tuple[str, ...]
    environment: dict[str, str]
    devices: tuple[DeviceMapping, ...] = ()
    binds: tuple[BindMount, ...] = ()
    gpu_device_ids: tuple[str, ...] = ()
    runtime: str | None = None
    shm_size: str = "2g"
    user: str | None = None
    working_dir: str = "/workspace"
    ipc_mode: str | None = None
    network_mode: str = "none"
    privileged: bool = False  # never True; stored so tests and reviewers can see it
    cap_add: tuple[str, ...] = ()
    hostname: str | None = None
    # What this container goes without (optional driver tools the host lacks): shown by
    # `harness plan` and logged by the executor; never a reason to refuse the run.
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LaunchSpec:
    """The process(es) that train: one ``python -m harness.worker`` or a torchrun of N ranks."""

    argv: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    world_size: int = 1

    def to_dict(self) -> dict:
        return asdict(self)
