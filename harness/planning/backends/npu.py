"""Ascend NPUs: torch_npu, BN (the seed had no SyncBN), hccl, AMP with the seed's static loss scale
128, the seed's env_npu.sh variables, and the container's device nodes and driver binds.

Two ways to give a container its NPUs (ascend-scripts.md): mount the device nodes and driver pieces
by hand ("plain"), or let the Ascend Docker Runtime do it from ``ASCEND_VISIBLE_DEVICES``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, MutableMapping

from harness.planning.backends.base import ContainerDevices, enable_amp, replace_norm, set_dist_backend
from harness.planning.spec import BindMount, DeviceMapping

NAME = "npu"
DIST_BACKEND = "hccl"
SEED_LOSS_SCALE = 128.0

CONTROL_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
# What training needs from the driver (torch_npu loads lib64; CANN reads the two info files).
DRIVER_BINDS = (
    "/usr/local/Ascend/driver/lib64",
    "/usr/local/Ascend/driver/version.info",
    "/etc/ascend_install.info",
)
# Optional: bound read-only when the host has them, a warning when not, never a refusal. npu-smi
# (hosts keep it in /usr/local/bin or /usr/local/sbin, the two places the Ascend Docker Runtime
# allows) and dcmi serve only the worker's device report; /var/log/npu holds the device fault
# logs worth reading after a crash.
NPU_SMI_PATHS = ("/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi")
DCMI_DIR = "/usr/local/dcmi"
DEVICE_LOG_DIR = "/var/log/npu"
OPTIONAL_HOST_PATHS = (*NPU_SMI_PATHS, DCMI_DIR, DEVICE_LOG_DIR)

# env_npu.sh's variables that still mean something to current CANN / torch_npu. PTCOPY_ENABLE,
# COMBINED_ENABLE and DYNAMIC_OP belonged to the torch 1.5 fork and are gone.
SEED_ENVIRONMENT = {
    "ASCEND_SLOG_PRINT_TO_STDOUT": "0",
    "ASCEND_GLOBAL_LOG_LEVEL": "3",
    "ASCEND_GLOBAL_EVENT_ENABLE": "0",
    "TASK_QUEUE_ENABLE": "1",
    "HCCL_WHITELIST_DISABLE": "1",
    # HCCL timeouts current CANN still reads (seconds): link setup between ranks (default 120,
    # too short when 8 ranks first compile their graphs) and one collective's execution (default
    # 1836 on A2; 1800 keeps it below the 2-hour window the operators' watchdogs use).
    "HCCL_CONNECT_TIMEOUT": "1200",
    "HCCL_EXEC_TIMEOUT": "1800",
}


def environment(world_size: int) -> dict[str, str]:
    return dict(SEED_ENVIRONMENT)


def format_device_ids(device_ids: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in device_ids)


def container_visible_ids(device_ids: tuple[int, ...]) -> str:
    """ASCEND_RT_VISIBLE_DEVICES for hand-mounted nodes. CANN numbers the NPUs a container sees
    0..n-1 in /dev/davinciN order, and the variable indexes that numbering, not the host's:
    host NPUs 4,5 mounted are "0,1" inside (vllm-ascend #16256: host 3-7 are 0-4 inside)."""
    return ",".join(str(i) for i in range(len(device_ids)))


def present_optional_paths(exists: Callable[[str], bool] = os.path.exists) -> tuple[str, ...]:
    """Which of OPTIONAL_HOST_PATHS this host has (the one impure step; plans take its answer)."""
    return tuple(path for path in OPTIONAL_HOST_PATHS if exists(path))


def optional_binds(present: Iterable[str]) -> tuple[tuple[BindMount, ...], tuple[str, ...]]:
    """Read-only binds for the optional driver pieces the host has, and a warning per missing one."""
    present = set(present)
    binds, warnings = [], []
    smi = next((path for path in NPU_SMI_PATHS if path in present), None)
    if smi:
        binds.append(BindMount(smi, smi, read_only=True))
    else:
        warnings.append(f"npu-smi not found in {' or '.join(NPU_SMI_PATHS)}: not mounted "
                        "(training does not need it; the worker's NPU report will lack what it shows)")
    for path, why in ((DCMI_DIR, "npu-smi needs it; training does not"),
                      (DEVICE_LOG_DIR, "device fault logs; training does not need them")):
        if path in present:
            binds.append(BindMount(path, path, read_only=True))
        else:
            warnings.append(f"{path} not found on this host: not mounted ({why})")
    return tuple(binds), tuple(warnings)


def container_devices(device_ids: tuple[int, ...], runtime: str, present: Iterable[str] = ()) -> ContainerDevices:
    """``present``: the OPTIONAL_HOST_PATHS this host has (``present_optional_paths()``)."""
    if runtime == "ascend":
        # The runtime takes host ids and mounts the nodes and driver pieces itself.
        return ContainerDevices(runtime="ascend", environment={"ASCEND_VISIBLE_DEVICES": format_device_ids(device_ids)})
    nodes = tuple(DeviceMapping(f"/dev/davinci{i}", f"/dev/davinci{i}") for i in device_ids)
    control = tuple(DeviceMapping(path, path) for path in CONTROL_DEVICES)
    binds = tuple(BindMount(path, path, read_only=True) for path in DRIVER_BINDS)
    extra, warnings = optional_binds(present)
    # Each rank then calls set_device(local_rank), i.e. container ids 0..n-1 as well.
    return ContainerDevices(
        devices=nodes + control, binds=binds + extra, warnings=warnings,
        environment={"ASCEND_RT_VISIBLE_DEVICES": container_visible_ids(device_ids)},
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
