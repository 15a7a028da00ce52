"""The smoke recipe in a real container: through the Docker executor and through
``docker compose run smoke``, both training for real; kill, resume and Ctrl-C in a container.

Skips without an engine, fails instead when PSPNET_REQUIRE_DOCKER=1 (CI); see test_docker_engine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from harness.executors import docker as dx
from harness.store.runs import RunStore
from support import RECIPES, REPO, log_has, run_cli, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SHORT = ["--set", "train.iterations=60", "--set", "train.log_interval=10", "--set", "train.checkpoint_interval=20",
         "--set", "train.val_interval=60"]


@pytest.fixture
def docker_env(cache_env, client):
    return {**cache_env, "DOCKER_HOST": dx.engine_url()}


def containers_of(client, image: str) -> list:
    return client.containers.list(all=True, filters={"ancestor": image})


def test_smoke_in_a_container_through_the_docker_executor(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--executor", "docker", "--set", f"image={cpu_image}",
                   "--results", str(results), "--quiet", *SHORT, env=docker_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = RunStore(results).all()
    assert run.status().state == "succeeded"
    result = json.loads(run.result_file.read_text())
    assert result["provenance"]["image_id"] == client.images.get(cpu_image).id
    assert result["iterations"] == 60 and result["final"]["mIoU"] is not None
    assert log_has(run, "harness.worker: rank 0 of 1 started")
    worker_env = json.loads((run.path / "worker_env.json").read_text())
    assert worker_env["packages"]["mmsegmentation"] == "1.2.2"  # read inside the container
    # the harness the container really ran: baked into the image, as no git is there
    assert worker_env["harness_version"] and worker_env["harness_version"] == run.provenance().image.harness_version
    assert run.provenance().image.image_id == client.images.get(cpu_image).id
    plan = json.loads(run.plan_file.read_text())
    assert plan["executor"] == "docker" and plan["container"]["user"] == "1000:1000"
    assert containers_of(client, cpu_image) == []  # removed after the run
    report = (results / "README.md").read_text()
    assert f"CPU-1p smoke_cpu `{run.run_id}`" in report


def compose_cli() -> list[str]:
    for cli in (["docker", "compose"], ["docker-compose"]):
        try:
            if subprocess.run([*cli, "version"], capture_output=True, timeout=60).returncode == 0:
                return cli
        except FileNotFoundError:
            continue
    pytest.fail("no docker compose CLI (bash .ci/docker-up.sh installs both v1 and v2)")


def test_docker_compose_run_smoke_trains_and_reports(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    results.mkdir()
    # The service runs as RUN_UID:RUN_GID (default 1000:1000), never root: the results folder must
    # be theirs, as .env.example says. A root test host hands it to uid 1000, like the executor does.
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() else (1000, 1000)
    os.chown(results, uid, gid)
    env = {**docker_env, "CPU_IMAGE": cpu_image, "RESULTS_DIR": str(results), "SMOKE_ITERATIONS": "40",
           "RUN_UID": str(uid), "RUN_GID": str(gid)}
    proc = subprocess.run(
        [*compose_cli(), "-f", str(REPO / "compose.yaml"), "-p", f"pspnet-e2e-{os.getpid()}", "run", "--rm", "smoke"],
        capture_output=True, text=True, env=env, timeout=900, cwd=REPO,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    [run] = RunStore(results).all()
    assert run.status().state == "succeeded"
    result = json.loads(run.result_file.read_text())
    assert result["iterations"] == 40 and result["evaluations_count"] >= 1
    # the host's harness reports a run made inside the compose service
    report = run_cli("report", "--results", str(results))
    assert report.returncode == 0
    assert f"CPU-1p smoke_cpu `{run.run_id}`" in (results / "README.md").read_text()


def start_docker_run(results, image, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(RECIPES / "smoke_cpu.yaml"), "--executor", "docker",
         "--set", f"image={image}", "--results", str(results), "--quiet", "--no-report", *SHORT],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def the_run(results):
    wait_for(lambda: len(RunStore(results).all()) == 1, 60, "the run folder")
    return RunStore(results).all()[0]


def test_killed_container_is_failed_then_resumed(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    harness = start_docker_run(results, cpu_image, docker_env)
    run = the_run(results)
    wait_for(lambda: log_has(run, "Saving checkpoint at 40 iterations"), what="the 40-iteration checkpoint")
    [container] = containers_of(client, cpu_image)
    container.kill()
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 1, stderr
    status = run.status().model_dump()
    assert status["state"] == "failed" and status["exit_code"] == 137 and "killed" in status["reason"]
    assert containers_of(client, cpu_image) == []
    resumed = run_cli("run", "--resume", run.run_id, "--results", str(results), "--quiet", "--no-report", env=docker_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(run.result_file.read_text())
    assert run.status().state == "succeeded" and result["iterations"] == 60
    assert [p["iter"] for p in result["train"]] == [10, 20, 30, 40, 50, 60]


def test_sigint_during_a_container_run(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    harness = start_docker_run(results, cpu_image, docker_env)
    run = the_run(results)
    wait_for(lambda: log_has(run, "Iter(train) [10/60]"), what="the first train window")
    harness.send_signal(signal.SIGINT)
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 130, stderr
    assert run.status().state == "interrupted"
    assert containers_of(client, cpu_image) == []
    assert log_has(run, "Iter(train) [10/60]")


def test_missing_image_is_exit_3_and_nothing_written(tmp_path, client, docker_env):
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--executor", "docker", "--set", "image=pspnet-repro/cpu:absent",
                   "--results", str(results), env=docker_env)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "harness image build cpu" in lines[0], proc.stderr
    assert RunStore(results).all() == []
