"""Executors: where a plan runs. ``get_executor(name)`` returns the class registered under
``name``. Every module of this package that calls ``register(...)`` at its top level is an
executor module: adding an executor is adding one such module (see ``harness.executors.base``).
They are found by reading, and imported only when an executor is asked for; none imports an
engine's SDK at its top (Docker's is loaded by a docker run only).

Stage: where a plan runs (local, docker, slurm), the images and host checks they need. May import:
harness.planning, harness.store, harness.core (checked by lint-imports; see docs/architecture.md).
"""
from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path

from harness.core.errors import BadInput

_REGISTERS = re.compile(r"^@?register\b", re.MULTILINE)
_REGISTRY: dict[str, type] = {}
_loaded = False


def _load_executor_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for folder in __path__:
        for path in sorted(Path(folder).glob("*.py")):
            if path.stem != "__init__" and _REGISTERS.search(path.read_text(encoding="utf-8")):
                import_module(f"{__name__}.{path.stem}")


def register(cls: type) -> type:
    """Make ``cls`` (a subclass of ``harness.executors.base.Executor``) available as ``cls.name``;
    a name already taken by another class is refused (one would silently replace the other)."""
    taken = _REGISTRY.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"executor {cls.name!r} is already registered ({taken.__module__}.{taken.__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def executor_names() -> list[str]:
    _load_executor_modules()
    return sorted(_REGISTRY)


def get_executor(name: str) -> type:
    _load_executor_modules()
    if name not in _REGISTRY:
        raise BadInput(f"executor {name!r}: expected one of {', '.join(executor_names())}")
    return _REGISTRY[name]


def all_executors() -> list[type]:
    """Every executor class, built-ins loaded (their modules import no engine SDK at the top)."""
    return [get_executor(name) for name in executor_names()]


def default_executor(recipe) -> str:
    # The one-node CPU smoke recipes run anywhere without Docker; device recipes need their image,
    # and several nodes need an executor that starts every node.
    return "docker" if recipe.image and (recipe.device.kind != "cpu" or recipe.device.nodes > 1) else "local"


def build_executor(name: str, options: dict[str, str], where: str):
    """The executor ``name`` built with ``options`` recorded in ``where`` (plan.json of a run or a
    bundle): each option checked by the validator a fresh command line uses; one line of bad input."""
    cls = get_executor(name)
    try:
        cls.check_options(options)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None
    return cls(**options)
