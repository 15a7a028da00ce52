"""Executors declare themselves (issue 18): adding one is one module under harness/executors/ --
the test double (tests/executor_double.py) placed among the package's modules, nothing else edited --
and the CLI lists it and its options; nothing outside harness/executors/ names an executor."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.executors import get_executor, register
from harness.executors.base import Executor, Outcome

REPO = Path(__file__).resolve().parents[1]
DOUBLE = Path(__file__).with_name("executor_double.py")
# harness.executors reads its own folders (__path__) for executor modules: one more folder holding
# the double stands for the file added to harness/executors/, without writing into the checkout.
WITH_DOUBLE = ("import sys, harness.executors; harness.executors.__path__.append(sys.argv[1]); "
               "from harness.cli import main; sys.exit(main(sys.argv[2:]))")


def harness_with_double(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    modules = tmp_path / "added_executors"
    modules.mkdir(exist_ok=True)
    shutil.copy(DOUBLE, modules / DOUBLE.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", WITH_DOUBLE, str(modules), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_help_lists_the_added_executor_and_its_option(tmp_path):
    done = harness_with_double(tmp_path, "run", "--help")
    assert done.returncode == 0, done.stderr
    assert "double (--executor double)" in done.stdout and "--double-failing-node NODE" in done.stdout, done.stdout
    assert "double: Runs nothing" in " ".join(done.stdout.split())


class Minimal(Executor):
    """Only what must be written."""

    name = "minimal"

    def start(self, plan, run, on_line):
        pass

    def wait(self):
        return Outcome(exit_code=0)

    def stop(self):
        pass


def test_a_taken_name_is_refused():
    class Impostor(Minimal):
        """Would replace the local executor."""

        name = "local"

    local = get_executor("local")
    with pytest.raises(ValueError, match="'local' is already registered"):
        register(Impostor)
    assert get_executor("local") is local and register(local) is local


def test_every_member_but_start_wait_stop_has_a_working_default():
    executor, plan = Minimal(), object()
    assert not Minimal.multi_node and not Minimal.requires_image and Minimal.run_options == ()
    assert executor.prepare(plan) is plan and executor.arrange(plan) is plan
    assert executor.options() == {} and executor.describe() == {} and not executor.worker_in_container()


def test_the_added_executor_runs_and_resume_checks_its_recorded_option(tmp_path, cache_env):
    results = tmp_path / "results"
    done = harness_with_double(tmp_path, "run", "recipes/smoke_cpu.yaml", "--executor", "double",
                               "--double-failing-node", "node-c", "--set", "train.iterations=2", "--quiet",
                               "--no-report", "--results", str(results))
    assert done.returncode == 1, done.stderr
    [run] = (results / "runs").iterdir()
    status = json.loads((run / "status.json").read_text())
    assert status["reason"] == "node node-c failed (exit code 7)", status
    plan = json.loads((run / "plan.json").read_text())
    assert plan["executor"] == "double" and plan["executor_options"] == {"failing_node": "node-c"}
    # an option edited into plan.json is checked by the validator a command line meets
    plan["executor_options"]["failing_node"] = "node-c; touch pwned"
    (run / "plan.json").write_text(json.dumps(plan))
    before = (run / "status.json").read_text()
    done = harness_with_double(tmp_path, "run", "--resume", run.name, "--results", str(results))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "plan.json: --double-failing-node 'node-c; touch pwned': expected node-<letter>" in done.stderr
    assert (run / "status.json").read_text() == before


def test_a_bad_option_on_the_command_line_is_refused_by_the_same_validator(tmp_path):
    done = harness_with_double(tmp_path, "run", "recipes/smoke_cpu.yaml", "--executor", "double",
                               "--double-failing-node", "nodeC", "--results", str(tmp_path / "results"))
    assert done.returncode == 2 and "--double-failing-node 'nodeC': expected node-<letter>" in done.stderr, done.stderr
    assert not (tmp_path / "results").exists()


# A string compared with an executor's name, or a constant standing for one: only harness/executors/
# may know executors by name.
NAME_COMPARED = re.compile(r"""(==|!=)\s*["'](docker|slurm|local)["']|["'](docker|slurm|local)["']\s*(==|!=)"""
                           r"""|\bin\s*[(\[{]\s*["'](docker|slurm|local)["']""")


def test_no_executor_name_is_compared_outside_executors():
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted((REPO / "harness").rglob("*.py")) if "executors" not in path.relative_to(REPO).parts
             for number, line in enumerate(path.read_text().splitlines(), 1) if NAME_COMPARED.search(line)]
    assert not found, "\n".join(found)


def test_no_getattr_on_an_executor():
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted((REPO / "harness").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"getattr\((executor|chosen|cls|get_executor\()", line)]
    assert not found, "\n".join(found)
