"""Where a number came from: the harness commit, the host, the software versions."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from harness import SOURCE_TREE

REPO = SOURCE_TREE
PACKAGES = ("torch", "torch_npu", "mmcv", "mmcv-lite", "mmengine", "mmsegmentation", "numpy", "docker")
ENV_PREFIXES = ("ASCEND_", "HCCL_", "TASK_QUEUE", "CUDA_VISIBLE", "NCCL_", "OMP_NUM_THREADS", "TORCH_")
# What decides a number: the harness code, the recipes, the images' Dockerfiles, the pins. Not
# results/ (example runs are tracked there, and every report rewrites them), docs or tests, so
# "dirty" means "the code that produced this differs from its commit" and nothing else.
CODE_PATHS = ("harness", "docker", "pyproject.toml")  # the recipes live in harness/recipes
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


def harness_identity() -> dict:
    """The harness that is running: its git commit and dirty flag from the checkout, or, inside an
    image (no git there), what ``harness image build`` baked into ``harness._build_info``; and a
    version string ``<package version>+g<commit>[.dirty]``."""
    commit, dirty, changed = code_state()
    if commit is None:
        try:
            import json

            from harness._build_info import BUILD_INFO  # type: ignore[import-not-found]

            baked = json.loads(BUILD_INFO)
            return {k: baked.get(k) for k in ("harness_commit", "harness_dirty", "harness_version", "harness_changed_files")}
        except ImportError:
            dirty = None
    try:
        package = metadata.version("pspnet-repro")
    except metadata.PackageNotFoundError:
        package = "0+unknown"
    version = package if commit is None else f"{package}+g{commit[:12]}{'.dirty' if dirty else ''}"
    return {"harness_commit": commit, "harness_dirty": dirty, "harness_version": version,
            "harness_changed_files": changed}


def host_provenance() -> dict:
    return {
        **harness_identity(),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "environment": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)},
    }
