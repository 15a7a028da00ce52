"""Ordinary accidents with real training (local executor): a harness killed or hung up on, two
resumes at once, Ctrl-C pressed again and again, a full disk, a closed output pipe. Each ends
with a recorded run, no orphaned trainer and nothing lost."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store.runs import RunStore
from support import RECIPES, REPO, log_has, run_cli, wait_for, require_extra
from test_records import mount_tmpfs, umount

pytestmark = pytest.mark.slow
require_extra("mmseg", reason="the training stack (pip install -e '.[train]') is not installed")

SHORT = ["--set", "train.iterations=40", "--set", "train.log_interval=5", "--set", "train.checkpoint_interval=10",
         "--set", "train.val_interval=40"]


def start(results: Path, env: dict, *extra: str, recipe: str | None = "smoke_cpu.yaml") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", *([str(RECIPES / recipe)] if recipe else []), "--results", str(results),
         "--quiet", "--no-report", *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def the_run(results: Path):
    wait_for(lambda: len(RunStore(results).all()) == 1, 120, "the run folder")
    return RunStore(results).all()[0]


def workers(run) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"harness.worker.*{run.path}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_killed_harness_takes_its_trainer_along_and_two_resumes_do_not_both_train(tmp_path, cache_env):
    results = tmp_path / "results"
    proc = start(results, cache_env, *SHORT)
    run = the_run(results)
    wait_for(lambda: (run.work_dir.glob("*/iter_10.pth") and any(run.work_dir.rglob("iter_10.pth"))), 900,
             "the first checkpoint")
    assert workers(run), "the trainer should be running"
    proc.send_signal(signal.SIGKILL)  # no handler runs: only the kernel (lock, parent-death signal) can help
    proc.wait()
    # Both within the 10 s: an exiting process leaves the process list (its cmdline goes first)
    # a moment before the kernel closes its files and so drops its trainer lock.
    wait_for(lambda: not workers(run) and not run.trainer_alive(), 10, "the orphaned trainer to exit")
    assert run.effective_state() == "stale"

    first = start(results, cache_env, "--resume", run.run_id, recipe=None)
    wait_for(lambda: run.is_live() or first.poll() is not None, 600, "the first resume to take the run")
    assert first.poll() is None, first.communicate()[1][-3000:]
    second = run_cli("run", "--resume", run.run_id, "--results", str(results), "--no-report", env=cache_env)
    assert second.returncode == 3, second.stderr
    assert "another harness process is running it" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    out, err = first.communicate(timeout=1200)
    assert first.returncode == 0, err[-3000:]
    status = run.status()
    assert status.state == "succeeded" and status.attempts == 2
    assert run.result().iterations == 40
    assert not workers(run)


def test_hangup_records_the_run_and_stops_the_trainer(tmp_path, cache_env):
    results = tmp_path / "results"
    proc = start(results, cache_env, *SHORT)
    run = the_run(results)
    wait_for(lambda: log_has(run, "Iter(train)"), 900, "training to start")
    proc.send_signal(signal.SIGHUP)  # the terminal was closed
    proc.wait(timeout=120)
    assert proc.returncode == 130
    assert run.status().state == "interrupted" and run.effective_state() == "interrupted"
    wait_for(lambda: not workers(run), 10, "the trainer to exit")


def test_ctrl_c_pressed_again_and_again_still_records_the_run(tmp_path, cache_env):
    results = tmp_path / "results"
    proc = start(results, cache_env, "--set", "train.iterations=40", "--set", "train.log_interval=5",
                 "--set", "train.val_interval=40", "--set", "train.checkpoint_interval=40", recipe="smoke_cpu_2p.yaml")
    run = the_run(results)
    wait_for(lambda: log_has(run, "Iter(train)"), 900, "training to start")
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:  # on and on, until it has exited
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    status = run.status()
    assert status.state == "interrupted" and run.effective_state() == "interrupted"
    result = run.result()
    assert result is not None and result.train, "what was logged before the interrupt is parsed"
    wait_for(lambda: not workers(run), 10, "both ranks to exit")


def test_full_disk_fails_the_run_with_reason_and_no_traceback(tmp_path, cache_env):
    results = tmp_path / "small"
    mount_tmpfs(results, "size=24m")
    try:
        env = {**cache_env, "PSPNET_MIN_FREE_GB": "0"}
        proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--quiet",
                       "--set", "train.iterations=10", "--set", "train.log_interval=5",
                       "--set", "train.checkpoint_interval=5", "--set", "train.val_interval=10", env=env)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        run = RunStore(results).all()[0]
        status = run.status()
        assert status.state == "failed" and status.reason == "disk full", status
        assert run.effective_state() == "failed"
    finally:
        umount(results)


def test_a_closed_output_pipe_does_not_fail_the_run(tmp_path, cache_env):
    results = tmp_path / "results"
    command = (f"{sys.executable} -m harness run {RECIPES / 'smoke_cpu.yaml'} --results {results} --no-report "
               "--set train.iterations=10 --set train.log_interval=2 --set train.val_interval=10 "
               "--set train.checkpoint_interval=10 2>&1 | head -3")
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, env=cache_env, capture_output=True, text=True, timeout=1200)
    assert len(proc.stdout.splitlines()) == 3
    run = RunStore(results).all()[0]
    wait_for(lambda: run.status().state != "running" and not run.is_live(), 1200, "the run to end")
    assert run.status().state == "succeeded", run.status().reason
    assert run.result().iterations == 10 and log_has(run, "Iter(train) [10/10]")
