from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "harness" / "recipes"  # the shipped recipes (package data); ./recipes links here
SHARED_LOGS = REPO / "tests" / "fixtures" / "logs" / "public"  # copies of ../shared/fixtures/logs (SOURCES.md)


def require_extra(module: str, reason: str | None = None):
    """``pytest.importorskip`` for an optional extra, except that with PSPNET_REQUIRE_EXTRAS=1 (set by
    .ci/run, like the Docker and Slurm switches) a missing extra fails: CI must never skip silently."""
    import os

    import pytest

    reason = reason or f"{module} (an optional extra) is not installed"
    if os.environ.get("PSPNET_REQUIRE_EXTRAS") == "1":
        try:
            return __import__(module, fromlist=["_"])
        except ImportError as exc:
            pytest.fail(f"PSPNET_REQUIRE_EXTRAS=1 but {reason}: {exc}", pytrace=False)
    return pytest.importorskip(module, reason=reason)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real command line, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


# Runs a command and reports its peak resident memory: the child's own high-water mark, read by
# a wrapper process that waits for it (RUSAGE_CHILDREN of the wrapper holds that child alone).
_PEAK_WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "peak_kib": peak_kib}))
"""


def run_measured(*args: str, timeout: float = 120, cwd: Path | None = None, env: dict | None = None) -> tuple[subprocess.CompletedProcess, int]:
    """``run_cli`` (or ``python -c``, when the first argument is ``-c``) with its peak RSS in MiB."""
    import json

    command = [sys.executable, *args] if args and args[0] == "-c" else [sys.executable, "-m", "harness", *args]
    wrapper = subprocess.run([sys.executable, "-c", _PEAK_WRAPPER, str(timeout), *command], cwd=cwd or REPO, env=env,
                             capture_output=True, text=True, timeout=timeout + 30)
    assert wrapper.returncode == 0, wrapper.stderr  # a timeout in the wrapper fails here, not later
    data = json.loads(wrapper.stdout)
    done = subprocess.CompletedProcess(command, data["rc"], data["stdout"], data["stderr"])
    return done, data["peak_kib"] // 1024


def wait_for(predicate, timeout: float = 300, what: str = "") -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def log_has(run, text: str) -> bool:
    return run.log_file.is_file() and text in run.log_file.read_text(errors="replace")


def mount_tmpfs(path: Path, options: str) -> None:
    """A real small file system (root only; tests that need one skip with this reason otherwise:
    CI runs as root, so there they run)."""
    import os

    import pytest

    if os.getuid() != 0:
        pytest.skip("needs root to mount a tmpfs (read-only / tiny disk)")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)
