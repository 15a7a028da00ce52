"""NVIDIA GPUs: SyncBN across ranks, nccl, AMP; the container gets a device request."""
from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from harness.planning.backends.base import ContainerDevices, enable_amp, replace_norm, set_dist_backend

NAME = "gpu"
DIST_BACKEND = "nccl"


def environment(world_size: int) -> dict[str, str]:
    return {}


def container_devices(device_ids: tuple[int, ...], runtime: str, present: Iterable[str] = ()) -> ContainerDevices:
    return ContainerDevices(gpu_device_ids=tuple(str(i) for i in device_ids))


def adapt_config(cfg: MutableMapping, *, world_size: int, norm: str, amp: bool) -> list[str]:
    # SyncBN in a single process is plain BN with extra overhead (and fails without a process group).
    effective = norm if world_size > 1 else "BN"
    replace_norm(cfg["model"], effective)
    set_dist_backend(cfg, DIST_BACKEND)
    notes = [f"norm {effective}, dist backend nccl"]
    if amp:
        enable_amp(cfg, "dynamic")
        notes.append("AMP: AmpOptimWrapper, dynamic loss scale")
    return notes
