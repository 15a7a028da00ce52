"""Checks before anything starts: disk for checkpoints, devices present and free.

Each check returns problems as one-line strings; ``run_preflight`` raises them together. The
device checks use ``npu-smi`` / ``nvidia-smi`` where the host has them; a device held by another
process or container makes those tools report it (or, for npu-smi, fail with -8005).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from harness.core.errors import EnvironmentNotReady
from harness.planning.recipe import Recipe

# Checkpoints with optimizer state: R50-D8 PSPNet ~400 MB each, a few kept; the smoke R18 ~100 MB.
MIN_FREE_GB = {"cpu": 1.0, "gpu": 10.0, "npu": 10.0}

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def min_free_gb(kind: str) -> float:
    """The free space a run needs; ``PSPNET_MIN_FREE_GB`` overrides it (small disks, tests)."""
    override = os.environ.get("PSPNET_MIN_FREE_GB")
    if override:
        try:
            value = float(override)
        except ValueError:
            raise EnvironmentNotReady(f"PSPNET_MIN_FREE_GB={override!r}: expected a number of GB") from None
        if value >= 0 and value == value and value != float("inf"):
            return value
        raise EnvironmentNotReady(f"PSPNET_MIN_FREE_GB={override!r}: expected a finite number >= 0")
    return MIN_FREE_GB[kind]


def disk_problems(results_dir: Path, kind: str, free_bytes: int | None = None) -> list[str]:
    target = Path(results_dir)
    while not target.exists():
        target = target.parent
    free = shutil.disk_usage(target).free if free_bytes is None else free_bytes
    need = min_free_gb(kind)
    if free < need * 1024**3:
        return [f"{results_dir}: only {free / 1024**3:.1f} GB free; a {kind} run needs >= {need:.0f} GB for logs and checkpoints"]
    return []


def npu_busy_problems(device_ids: tuple[int, ...], run: Runner = _run, which=shutil.which) -> list[str]:
    if which("npu-smi") is None:
        return []
    problems = []
    for device in device_ids:
        proc = run(["npu-smi", "info", "-t", "usages", "-i", str(device)])
        if proc.returncode != 0:
            detail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            problems.append(f"NPU {device}: npu-smi failed ({detail[0]}); -8005 means another container holds it")
    proc = run(["npu-smi", "info", "proc"]) if not problems else None
    if proc is not None and proc.returncode == 0:
        for device in device_ids:
            if f"NPU {device} " in proc.stdout and "Process id" in proc.stdout:
                problems.append(f"NPU {device}: in use by another process (npu-smi info proc)")
    return problems


def gpu_busy_problems(device_ids: tuple[int, ...], run: Runner = _run, which=shutil.which) -> list[str]:
    if which("nvidia-smi") is None:
        return []
    proc = run(["nvidia-smi", "--query-compute-apps=gpu_bus_id,pid", "--format=csv,noheader"])
    bus = run(["nvidia-smi", "--query-gpu=index,pci.bus_id", "--format=csv,noheader"])
    if proc.returncode != 0 or bus.returncode != 0:
        return [f"nvidia-smi failed: {(proc.stderr or bus.stderr).strip()[:200]}"]
    index_of = {}
    for line in bus.stdout.splitlines():
        index, _, bus_id = (part.strip() for part in line.partition(","))
        if index.isdigit():
            index_of[bus_id] = int(index)
    present = set(index_of.values())
    problems = [f"GPU {d}: not present (nvidia-smi lists {sorted(present)})" for d in device_ids if d not in present]
    for line in proc.stdout.splitlines():
        bus_id, _, pid = (part.strip() for part in line.partition(","))
        if index_of.get(bus_id) in device_ids:
            problems.append(f"GPU {index_of[bus_id]}: in use by process {pid}")
    return problems


def run_preflight(recipe: Recipe, results_dir: Path) -> None:
    kind = recipe.device.kind
    problems = disk_problems(results_dir, kind)
    if kind == "npu":
        problems += npu_busy_problems(recipe.device.device_ids)
    elif kind == "gpu":
        problems += gpu_busy_problems(recipe.device.device_ids)
    if problems:
        raise EnvironmentNotReady("; ".join(problems))
