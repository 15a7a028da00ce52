"""Nothing lost (local executor): a killed run is 'failed' with its logs, --resume finishes it in
the same folder, Ctrl-C marks a run 'interrupted' and leaves no process behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.logs.compliance import check_run
from harness.store.runs import RunStore
from support import RECIPES, REPO, log_has, run_cli, wait_for, require_extra

pytestmark = pytest.mark.slow
require_extra("mmseg", reason="the training stack (pip install -e '.[train]') is not installed")

SHORT = ["--set", "train.iterations=60", "--set", "train.log_interval=10", "--set", "train.checkpoint_interval=20",
         "--set", "train.val_interval=60"]


def start_run(results: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--quiet",
         "--no-report", *SHORT, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def the_run(results: Path):
    wait_for(lambda: len(RunStore(results).all()) == 1, 60, "the run folder")
    return RunStore(results).all()[0]


def worker_pids(run) -> list[int]:
    out = subprocess.run(["pgrep", "-f", str(run.path / "job.json")], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_killed_run_is_failed_then_resume_finishes_it(tmp_path, cache_env):
    results = tmp_path / "results"
    harness = start_run(results, cache_env)
    run = the_run(results)
    wait_for(lambda: log_has(run, "Saving checkpoint at 40 iterations"), what="the 40-iteration checkpoint")
    for pid in worker_pids(run):
        os.kill(pid, signal.SIGKILL)
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 1, stderr
    status = run.status().model_dump()
    assert status["state"] == "failed" and status["exit_code"] == -9
    assert "killed" in status["reason"]
    assert status["last_lines"] and log_has(run, "Iter(train) [40/60]")
    first = json.loads(run.result_file.read_text())
    assert first["partial"] is True and 40 <= first["iterations"] < 60
    # the killed worker's event stream has no run_stop: it fails the ruleset while it is the last
    [failure] = check_run(run.work_dir)[1]
    assert "run_stop: rule REQ EXACTLY_ONE failed: found 0 in the run's last attempt" in failure

    resumed = run_cli("run", "--resume", run.run_id, "--results", str(results), "--quiet", "--no-report", env=cache_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    status = run.status().model_dump()
    assert status["state"] == "succeeded" and status["attempts"] == 2
    assert log_has(run, "Resuming") or log_has(run, "resumed")
    result = json.loads(run.result_file.read_text())
    assert result["iterations"] == 60 and result["evaluations_count"] == 1
    iters = [p["iter"] for p in result["train"]]
    assert iters == sorted(set(iters)) == [10, 20, 30, 40, 50, 60]  # both attempts, nothing twice
    assert len(list(run.work_dir.glob("2*/"))) == 2  # one mmengine log folder per attempt
    assert check_run(run.work_dir) == (2, [])  # both attempts' streams comply: a later attempt followed
    assert len(result["provenance"]["log_files"]) >= 2

    again = run_cli("run", "--resume", run.run_id, "--results", str(results), env=cache_env)
    assert again.returncode == 2 and "already succeeded" in again.stderr


def test_ctrl_c_marks_interrupted_and_leaves_nothing_running(tmp_path, cache_env):
    results = tmp_path / "results"
    harness = start_run(results, cache_env)
    run = the_run(results)
    wait_for(lambda: log_has(run, "Iter(train) [10/60]"), what="the first train window")
    assert worker_pids(run)
    harness.send_signal(signal.SIGINT)
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 130, stderr
    assert run.status().state == "interrupted"
    assert worker_pids(run) == []
    assert log_has(run, "Iter(train) [10/60]")  # the log is kept


def test_timeout_stops_and_fails_the_run(tmp_path, cache_env):
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--quiet", "--no-report",
                   *SHORT, "--set", "timeout_minutes=0.2", env=cache_env)
    assert proc.returncode == 1
    run = RunStore(results).all()[0]
    status = run.status().model_dump()
    assert status["state"] == "failed" and status["reason"] == "timeout"
    assert worker_pids(run) == []
