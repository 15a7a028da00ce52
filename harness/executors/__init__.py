"""Executors: where a plan runs. ``get_executor(name)`` returns the class registered under
``name``; built-ins are imported only when asked for (Docker's SDK is not loaded for a local run).
A new executor module calls ``register`` on its class; see ``harness.executors.base``."""
from __future__ import annotations

from importlib import import_module

from harness.errors import BadInput

_BUILTIN = {
    "local": "harness.executors.local:LocalExecutor",
    "docker": "harness.executors.docker:DockerExecutor",
    "slurm": "harness.executors.slurm:SlurmExecutor",
}
_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``cls`` (implementing ``harness.executors.base.Executor``) available as ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def executor_names() -> list[str]:
    return sorted({*_BUILTIN, *_REGISTRY})


def get_executor(name: str) -> type:
    if name not in _REGISTRY and name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        register(getattr(import_module(module), attr))
    if name not in _REGISTRY:
        raise BadInput(f"executor {name!r}: expected one of {', '.join(executor_names())}")
    return _REGISTRY[name]
