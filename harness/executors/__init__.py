"""Executors: where a plan runs. ``get_executor(name)`` returns the class registered under
``name``; built-ins are imported only when asked for (Docker's SDK is not loaded for a local run).
A new executor module calls ``register`` on its class; see ``harness.executors.base``.

Stage: where a plan runs (local, docker, slurm), the images and host checks they need. May import:
harness.planning, harness.store, harness.core (checked by lint-imports; see docs/architecture.md).
"""
from __future__ import annotations

from importlib import import_module

from harness.core.errors import BadInput

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


def build_executor(name: str, options: dict[str, str], where: str):
    """The executor ``name`` built with ``options`` recorded in ``where`` (plan.json of a run or a
    bundle): the constructor checks each option as a fresh command line does; an option it does not
    take is one line of bad input, not a TypeError."""
    import inspect

    cls = get_executor(name)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise BadInput(f"{where}: executor_options: unknown option {unknown[0]!r} for the {name} executor "
                       f"(expected: {', '.join(accepted) or 'none'})")
    if not all(isinstance(value, str) for value in options.values()):
        raise BadInput(f"{where}: executor_options: every option's value must be text")
    return cls(**options)
