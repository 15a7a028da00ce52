"""The error seam (issue 18): commands raise HarnessError subclasses, one function turns them into
one line and an exit code, and each exit code is one constant."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.errors import EXIT_ENVIRONMENT, EnvironmentNotReady
from harness.executors import image_locks, images

REPO = Path(__file__).resolve().parents[1]


def test_the_worker_without_its_job_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "job.json"
    done = subprocess.run([sys.executable, "-m", "harness.worker", "--job", str(missing)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"harness.worker: error: {missing}: job file does not exist\n"


@pytest.mark.parametrize("needs_the_tree", [
    lambda root: images.content_tag("cpu", "base:1", repo_root=root),
    lambda root: images.default_base("cpu", repo_root=root),
    lambda root: image_locks.lock("cpu", repo_root=root, log=lambda line: None),
])
def test_outside_a_clone_image_commands_say_so_in_one_line(tmp_path, needs_the_tree):
    """A wheel install has no docker/ and no pyproject.toml beside the package."""
    (tmp_path / "harness").mkdir()
    with pytest.raises(EnvironmentNotReady) as caught:
        needs_the_tree(tmp_path)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_ENVIRONMENT and "\n" not in message
    assert message.startswith(f"{tmp_path}: no docker or pyproject.toml") and "clone" in message, message


# An exit code written as a number where core/errors.py names it.
LITERAL_EXIT = re.compile(r"(exit_code\s*=|\breturn|\bexit\()\s*(2|3|124|130)\b|^\s*EXIT_\w+\s*=\s*\d+")


def test_every_exit_code_is_one_constant_of_core_errors():
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted((REPO / "harness").rglob("*.py")) if path != REPO / "harness/core/errors.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if LITERAL_EXIT.search(line)]
    assert not found, "\n".join(found)


def test_the_old_name_of_bad_input_is_gone():
    old = "Recipe" + "Error"
    found = [str(path.relative_to(REPO)) for folder in ("harness", "tests") for path in (REPO / folder).rglob("*.py")
             if old in path.read_text()]
    assert not found, found
