"""Provenance: "dirty" means the harness code differs from its commit, not that a report rewrote
a tracked file under results/."""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness.store.provenance import code_state, host_provenance


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    for name in ("harness/a.py", "harness/recipes/r.yaml", "docker/Dockerfile", "pyproject.toml", "results/runs/x/result.json",
                 "README.md", "tests/test_a.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("one\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return repo


def test_results_docs_tests_and_untracked_files_do_not_make_it_dirty(tmp_path):
    repo = _repo(tmp_path)
    (repo / "results/runs/x/result.json").write_text("rewritten by a report\n")
    (repo / "results/runs/y").mkdir()
    (repo / "results/runs/y/plot.png").write_text("new run\n")
    (repo / "README.md").write_text("edited\n")
    (repo / "tests/test_a.py").write_text("edited\n")
    (repo / "harness/__pycache__").mkdir()
    (repo / "harness/__pycache__/a.pyc").write_text("bytecode\n")
    commit, dirty, changed = code_state(repo)
    assert commit and len(commit) == 40
    assert dirty is False and changed == []


def test_a_changed_tracked_code_file_makes_it_dirty_and_is_named(tmp_path):
    for name in ("harness/a.py", "harness/recipes/r.yaml", "docker/Dockerfile", "pyproject.toml"):
        repo = _repo(tmp_path / name.replace("/", "_"))
        (repo / name).write_text("changed\n")
        commit, dirty, changed = code_state(repo)
        assert dirty is True and changed == [name]


def test_outside_a_git_checkout_it_is_unknown(tmp_path):
    assert code_state(tmp_path) == (None, None, [])


def test_host_provenance_records_the_state():
    info = host_provenance()
    assert set(info) >= {"harness_commit", "harness_dirty", "harness_changed_files"}
