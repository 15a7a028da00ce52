"""Where a number came from: the harness commit, the host, the software versions."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torch_npu", "mmcv", "mmcv-lite", "mmengine", "mmsegmentation", "numpy", "docker")
ENV_PREFIXES = ("ASCEND_", "HCCL_", "TASK_QUEUE", "CUDA_VISIBLE", "NCCL_", "OMP_NUM_THREADS", "TORCH_")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_provenance() -> dict:
    status = _git("status", "--porcelain")
    return {
        "harness_commit": _git("rev-parse", "HEAD"),
        "harness_dirty": bool(status) if status is not None else None,
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "environment": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)},
    }
