from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "harness" / "recipes"  # the shipped recipes (package data); ./recipes links here
SHARED_LOGS = REPO / "tests" / "fixtures" / "logs" / "public"  # copies of ../shared/fixtures/logs (SOURCES.md)


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real command line, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )




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
