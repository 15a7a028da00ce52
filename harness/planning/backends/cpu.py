"""The CPU: BN, gloo, no AMP, and the two mmengine 0.10.7 CPU-DDP workarounds (stack-notes)."""
from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from harness.planning.backends.base import ContainerDevices, replace_norm, set_dist_backend

NAME = "cpu"
DIST_BACKEND = "gloo"
TORCHRUN_ENV: dict[str, str] = {"OMP_NUM_THREADS": "1"}
# A CPU rank's OpenMP threads (torch's CPU wheel ships GNU libgomp) by default spin 300,000 times
# at every barrier before sleeping: ~10 ms per wait here (a pause is ~35 ns). Beside one busy
# process the thread a barrier waits for is descheduled while the others spin out their time
# slices: 40x slower (issue 17). 10,000 spins (~0.35 ms) still cover the short waits between
# operators, so a rank alone keeps the speed of spinning, and one that meets load arriving later
# gives the core up within a fraction of a millisecond. (Load present at the start is met by
# using only the idle cores: plan.PlanInputs.free_cpus.) Set only when the caller chose none of
# PSPNET_CPU_THREADS, OMP_* or GOMP_* themselves; bench/bench_cpu_threads.py measures it.
THREAD_DEFAULTS: dict[str, str] = {"GOMP_SPINCOUNT": "10000"}


def environment(world_size: int) -> dict[str, str]:
    # Several ranks on 2 cores: one thread each, or they fight over the cores.
    return dict(TORCHRUN_ENV) if world_size > 1 else {}


def container_devices(device_ids: tuple[int, ...], runtime: str, present: Iterable[str] = ()) -> ContainerDevices:
    return ContainerDevices()


def adapt_config(cfg: MutableMapping, *, world_size: int, norm: str, amp: bool) -> list[str]:
    notes = []
    if norm == "SyncBN" or amp:
        raise ValueError("the CPU backend supports neither SyncBN nor AMP")
    replace_norm(cfg["model"], "BN")
    set_dist_backend(cfg, DIST_BACKEND)
    cfg.setdefault("env_cfg", {})["cudnn_benchmark"] = False
    if world_size > 1:
        # mmengine passes device_ids=[rank] to DDP, which CPU modules reject.
        cfg["model_wrapper_cfg"] = dict(
            type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False, find_unused_parameters=False
        )
        notes.append("DDP on CPU: device_ids=None, broadcast_buffers=False")
    notes.append("norm BN, dist backend gloo, cudnn_benchmark off")
    return notes
