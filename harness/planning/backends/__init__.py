"""Device backends, by recipe ``device.kind``."""
from __future__ import annotations

from types import ModuleType

from harness.planning.backends import cpu, gpu, npu

BACKENDS: dict[str, ModuleType] = {"cpu": cpu, "gpu": gpu, "npu": npu}


def get_backend(kind: str) -> ModuleType:
    return BACKENDS[kind]
