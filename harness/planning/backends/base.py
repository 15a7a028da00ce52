"""What differs per device kind, in one place: distributed backend, norm layer, AMP, environment,
the container's devices and binds, and the mmengine config adaptations the worker applies.

Config adaptations work on any mapping (an mmengine ``Config`` or a plain dict), so they are
tested without mmengine.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from harness.planning.spec import BindMount, DeviceMapping

NORM_TYPES = ("BN", "SyncBN")


@dataclass(frozen=True)
class ContainerDevices:
    devices: tuple[DeviceMapping, ...] = ()
    binds: tuple[BindMount, ...] = ()
    gpu_device_ids: tuple[str, ...] = ()
    runtime: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    # Things the run goes without (e.g. an optional driver tool the host lacks): shown, not fatal.
    warnings: tuple[str, ...] = ()


def replace_norm(node: Any, norm: str) -> int:
    """Set every ``norm_cfg`` of type BN/SyncBN below ``node`` to ``norm``; return how many."""
    changed = 0
    if isinstance(node, MutableMapping):
        for key, value in node.items():
            if key == "norm_cfg" and isinstance(value, MutableMapping) and value.get("type") in NORM_TYPES:
                value["type"] = norm
                changed += 1
            else:
                changed += replace_norm(value, norm)
    elif isinstance(node, (list, tuple)):
        for item in node:
            changed += replace_norm(item, norm)
    return changed


def set_dist_backend(cfg: MutableMapping, backend: str) -> None:
    env_cfg = cfg.setdefault("env_cfg", {})
    env_cfg.setdefault("dist_cfg", {})["backend"] = backend


def enable_amp(cfg: MutableMapping, loss_scale: float | str) -> None:
    wrapper = cfg["optim_wrapper"]
    wrapper["type"] = "AmpOptimWrapper"
    wrapper["loss_scale"] = loss_scale
