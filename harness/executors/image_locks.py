"""Per-platform, hash-pinned package locks for the images (``harness image lock KIND``).

Each image kind has its top-level pins in ``docker/<kind>/requirements.in``; together with
pyproject.toml's dependencies (what the harness itself needs inside the image) they are resolved
by ``uv pip compile`` once per platform the image supports into
``docker/<kind>/requirements-<platform>.lock``: every package, exact version, every hash. The
Dockerfiles install them with ``pip install --require-hashes --no-deps`` (the lock is complete,
so no resolver runs at build time and next month's PyPI changes nothing).

Pure helpers (paths, commands, digests) are tested without the network; ``lock`` runs uv.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import SOURCE_TREE
from harness.core.errors import BadInput, EnvironmentNotReady

REPO_ROOT = SOURCE_TREE
PYTHON_VERSION = "3.11"
INDEX_URL = "https://pypi.org/simple"

# Platforms each image supports, and uv's name for them (glibc 2.28: Debian bookworm has 2.36,
# the CANN images' Ubuntu 22.04 has 2.35, so every manylinux_2_28 wheel runs in them).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "cpu": ("linux-x86_64",),
    "gpu": ("linux-x86_64",),
    "npu": ("linux-aarch64", "linux-x86_64"),
}
UV_PLATFORMS = {"linux-x86_64": "x86_64-manylinux_2_28", "linux-aarch64": "aarch64-manylinux_2_28"}

# Packages a lock leaves out, per (kind, platform), because no index reachable where locks are
# made serves them; the Dockerfile installs them by exact version from their own index instead.
# NPU on x86_64 needs the CPU build of torch (PyPI's x86_64 torch is the CUDA build), which only
# download.pytorch.org serves.
UNLOCKED: dict[tuple[str, str], tuple[str, ...]] = {("npu", "linux-x86_64"): ("torch",)}


class LockError(EnvironmentNotReady):
    """uv is missing or the index cannot be reached (exit 3; the message says which and why)."""


class UnresolvableLock(BadInput):
    """The image's pins conflict or name a release without a wheel (exit 2)."""


def input_path(kind: str, repo_root: Path = REPO_ROOT) -> Path:
    return repo_root / "docker" / kind / "requirements.in"


def lock_path(kind: str, platform: str, repo_root: Path = REPO_ROOT) -> Path:
    return repo_root / "docker" / kind / f"requirements-{platform}.lock"


def platforms(kind: str) -> tuple[str, ...]:
    if kind not in PLATFORMS:
        raise BadInput(f"unknown image kind {kind!r}: expected one of {', '.join(PLATFORMS)}")
    return PLATFORMS[kind]


def lock_paths(kind: str, repo_root: Path = REPO_ROOT) -> list[Path]:
    return [lock_path(kind, p, repo_root) for p in platforms(kind)]


def compile_command(kind: str, platform: str, output: Path, *, find_links: tuple[str, ...] = ()) -> list[str]:
    """The ``uv pip compile`` argv (run in the repo root: paths in the lock's comments stay relative)."""
    cmd = [
        "uv", "pip", "compile", f"docker/{kind}/requirements.in", "pyproject.toml",
        "--override", "docker/overrides.txt",
        "--python-platform", UV_PLATFORMS[platform], "--python-version", PYTHON_VERSION,
        "--generate-hashes", "--index-url", INDEX_URL,
        "--custom-compile-command", f"harness image lock {kind}",
        "--output-file", str(output), "--quiet",
    ]
    platform_overrides = Path("docker") / kind / f"overrides-{platform}.txt"
    if (REPO_ROOT / platform_overrides).is_file():
        cmd += ["--override", platform_overrides.as_posix()]
    for link in find_links:
        cmd += ["--find-links", link]
    for name in UNLOCKED.get((kind, platform), ()):
        cmd += ["--no-emit-package", name]
    return cmd


def lock_digest(kind: str, repo_root: Path = REPO_ROOT) -> str | None:
    """sha256 over the kind's lock files (name and content, in platform order); None if a lock
    is missing. A run records it: same digest, same packages."""
    digest = hashlib.sha256()
    for path in lock_paths(kind, repo_root):
        if not path.is_file():
            return None
        digest.update(f"{path.name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return f"sha256:{digest.hexdigest()}"


def uv_executable() -> str:
    found = shutil.which("uv")
    if found:
        return found
    candidate = Path(sys.executable).parent / "uv"
    if candidate.is_file():
        return str(candidate)
    raise LockError("uv is not installed: `pip install uv` (it resolves the image locks)")


def checkout(repo_root: Path = REPO_ROOT) -> Path:
    """``repo_root`` when it holds docker/ and pyproject.toml, as a clone (an editable install) does;
    a wheel install has neither, which is one line (exit 3), not a missing-file traceback."""
    missing = [name for name in ("docker", "pyproject.toml") if not (repo_root / name).exists()]
    if missing:
        raise EnvironmentNotReady(f"{repo_root}: no {' or '.join(missing)}: images are built and locked from a clone "
                                  "of the harness, and this one is installed without its source tree; run it from a clone")
    return repo_root


def lock(kind: str, *, repo_root: Path = REPO_ROOT, find_links: tuple[str, ...] = (),
         log: Callable[[str], None] = print) -> list[Path]:
    """Write every platform's lock for ``kind``; returns their paths. A failed resolution leaves
    the previous lock untouched (uv writes to a temporary file first)."""
    checkout(repo_root)
    uv = uv_executable()
    if not input_path(kind, repo_root).is_file():
        raise BadInput(f"{input_path(kind, repo_root)}: no such file (the image's top-level pins)")
    written = []
    for platform in platforms(kind):
        target = lock_path(kind, platform, repo_root)
        tmp = target.with_name(target.name + ".tmp")
        cmd = [uv, *compile_command(kind, platform, tmp.relative_to(repo_root), find_links=find_links)[1:]]
        proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            reason = " ".join(r.strip() for r in (proc.stderr.strip().splitlines() or ["(no output)"])[-3:])
            error = UnresolvableLock if "No solution found" in proc.stderr else LockError
            raise error(f"{input_path(kind, repo_root)}: locking for {platform} failed: {reason}")
        tmp.replace(target)
        log(f"wrote {target.relative_to(repo_root)}")
        written.append(target)
    return written


def locked_versions(path: Path) -> dict[str, str]:
    """name -> version of every ``name==version`` line of a lock (names normalised: lower, -)."""
    versions = {}
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "==" in line:
            name, _, rest = line.partition("==")
            versions[name.strip().lower().replace("_", "-")] = rest.split()[0].rstrip("\\").strip()
    return versions
