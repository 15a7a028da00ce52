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
# What decides a number: the harness code, the recipes, the images' Dockerfiles, the pins. Not
# results/ (example runs are tracked there, and every report rewrites them), docs or tests, so
# "dirty" means "the code that produced this differs from its commit" and nothing else.
CODE_PATHS = ("harness", "recipes", "docker", "pyproject.toml")
MAX_CHANGED_LISTED = 20


def _git(*args: str, repo: Path = REPO) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_state(repo: Path = REPO) -> tuple[str | None, bool | None, list[str]]:
    """(commit, dirty, changed tracked code files) of the checkout at ``repo``; (None, None, [])
    outside a git checkout. Untracked files do not count (caches, new run folders)."""
    commit = _git("rev-parse", "HEAD", repo=repo)
    if commit is None:
        return None, None, []
    # Staged or not, against the commit; untracked files are not listed by `git diff`.
    names = _git("diff", "--name-only", "HEAD", "--", *CODE_PATHS, repo=repo)
    if names is None:
        return commit, None, []
    changed = sorted(line for line in names.splitlines() if line.strip())
    return commit, bool(changed), changed[:MAX_CHANGED_LISTED]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_provenance() -> dict:
    commit, dirty, changed = code_state()
    return {
        "harness_commit": commit,
        "harness_dirty": dirty,
        "harness_changed_files": changed,
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "environment": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)},
    }
