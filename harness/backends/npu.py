"""Ascend NPUs: torch_npu, BN (the seed had no SyncBN), hccl, AMP with the seed's static loss scale
128, the seed's env_npu.sh variables, and the container's device nodes and driver binds.

Two ways to give a container its NPUs (ascend-scripts.md): mount the device nodes and driver pieces
by hand ("plain"), or let the Ascend Docker Runtime do it from ``ASCEND_VISIBLE_DEVICES``.
"""
from __future__ import annotations

from collections.abc import MutableMapping

from harness.backends.base import ContainerDevices, enable_amp, replace_norm, set_dist_backend
from harness.spec import BindMount, DeviceMapping

NAME = "npu"
DIST_BACKEND = "hccl"
SEED_LOSS_SCALE = 128.0

CONTROL_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
DRIVER_BINDS = (
    "/usr/local/dcmi",
    "/usr/local/bin/npu-smi",
    "/usr/local/Ascend/driver/lib64",
    "/usr/local/Ascend/driver/version.info",
    "/etc/ascend_install.info",
)

# env_npu.sh's variables that still mean something to current CANN / torch_npu. PTCOPY_ENABLE,
# COMBINED_ENABLE and DYNAMIC_OP belonged to the torch 1.5 fork and are gone.
SEED_ENVIRONMENT = {
    "ASCEND_SLOG_PRINT_TO_STDOUT": "0",
    "ASCEND_GLOBAL_LOG_LEVEL": "3",
    "ASCEND_GLOBAL_EVENT_ENABLE": "0",
    "TASK_QUEUE_ENABLE": "1",
    "HCCL_WHITELIST_DISABLE": "1",
    "HCCL_CONNECT_TIMEOUT": "1200",
}


def environment(world_size: int) -> dict[str, str]:
    return dict(SEED_ENVIRONMENT)


def format_device_ids(device_ids: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in device_ids)


def container_devices(device_ids: tuple[int, ...], runtime: str) -> ContainerDevices:
    if runtime == "ascend":
        return ContainerDevices(runtime="ascend", environment={"ASCEND_VISIBLE_DEVICES": format_device_ids(device_ids)})
    nodes = tuple(DeviceMapping(f"/dev/davinci{i}", f"/dev/davinci{i}") for i in device_ids)
    control = tuple(DeviceMapping(path, path) for path in CONTROL_DEVICES)
    binds = tuple(BindMount(path, path, read_only=True) for path in DRIVER_BINDS)
    # With hand-mounted nodes the container sees the host's numbering; ASCEND_RT_VISIBLE_DEVICES
    # makes the chosen NPUs logical 0..n-1, which is what each rank's set_device(local_rank) uses.
    return ContainerDevices(
        devices=nodes + control, binds=binds, environment={"ASCEND_RT_VISIBLE_DEVICES": format_device_ids(device_ids)}
    )


def adapt_config(cfg: MutableMapping, *, world_size: int, norm: str, amp: bool) -> list[str]:
    if norm == "SyncBN":
        raise ValueError("the NPU backend trains with BN as the seed did; SyncBN is not supported here")
    replace_norm(cfg["model"], "BN")
    set_dist_backend(cfg, DIST_BACKEND)
    notes = ["norm BN, dist backend hccl"]
    if amp:
        enable_amp(cfg, SEED_LOSS_SCALE)
        notes.append("AMP: AmpOptimWrapper, static loss scale 128 (the seed's apex O1 setting)")
    return notes
