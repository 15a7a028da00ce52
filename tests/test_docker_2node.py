"""Two nodes on one Docker engine, for real: smoke_cpu_2node through the Docker executor, one
container per node on the run's bridge network, gloo across containers. Success, a node killed
mid-training (failed naming the node, then --resume), the harness killed (every node stops, then
--resume), and Ctrl-C: nothing is left behind.

Skips without an engine, fails instead when PSPNET_REQUIRE_DOCKER=1 (CI); see test_docker_engine.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from harness.executors import docker as dx
from harness.executors.docker_nodes import LABEL_RUN
from harness.store.runs import RunStore
from support import RECIPES, REPO, log_has, run_cli, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SHORT = ["--set", "train.iterations=20", "--set", "train.log_interval=5", "--set", "train.checkpoint_interval=10",
         "--set", "train.val_interval=20"]


@pytest.fixture
def docker_env(cache_env, client):
    return {**cache_env, "DOCKER_HOST": dx.engine_url()}


def leftovers(client, run_id: str) -> list[str]:
    containers = client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"})
    networks = client.networks.list(names=[f"pspnet-{run_id}"])
    return [c.name for c in containers] + [n.name for n in networks]


def node_log_has(run, node: int, text: str) -> bool:
    path = run.node_log_file(node)
    return path.is_file() and text in path.read_text(errors="replace")


def start_harness(results, image, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(RECIPES / "smoke_cpu_2node.yaml"), "--executor", "docker",
         "--set", f"image={image}", "--results", str(results), "--quiet", "--no-report", *SHORT],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def the_run(results):
    wait_for(lambda: len(RunStore(results).all()) == 1, 120, "the run folder")
    return RunStore(results).all()[0]


def both_nodes_training(run) -> bool:
    return log_has(run, "Iter(train) [ 5/20]") and node_log_has(run, 1, "harness.worker: rank 1 of 2 started")


def test_two_nodes_train_together_and_leave_nothing(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    proc = run_cli("run", str(RECIPES / "smoke_cpu_2node.yaml"), "--executor", "docker", "--set", f"image={cpu_image}",
                   "--results", str(results), "--quiet", *SHORT, env=docker_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = RunStore(results).all()
    assert run.status().state == "succeeded"
    # every node's own log; node 0's lines are also the run's train.log
    assert node_log_has(run, 0, "harness.worker: rank 0 of 2 started")
    assert node_log_has(run, 1, "harness.worker: rank 1 of 2 started")
    assert log_has(run, "harness.worker: rank 0 of 2 started") and not log_has(run, "rank 1 of 2 started")
    result = json.loads(run.result_file.read_text())
    assert result["iterations"] == 20 and result["device"] == {"kind": "cpu", "count": 2}
    # fps counts both ranks: batch per device x 2 ranks / mean step time
    assert result["fps"] == pytest.approx(2 * 2 / result["mean_iter_time_s"], rel=1e-3), result
    plan = json.loads(run.plan_file.read_text())
    assert plan["nodes"]["count"] == 2 and plan["container"]["network_mode"] == f"pspnet-{run.run_id}"
    assert leftovers(client, run.run_id) == []
    # the device column counts every rank of both nodes, as fps does
    assert f"CPU-2p (2 nodes) smoke_cpu_2node `{run.run_id}`" in (results / "README.md").read_text()


def started_past_first_checkpoint(results, image, env):
    """Both nodes training, the checkpoint of iteration 10 whole on disk (written atomically), not
    just announced: a kill during the save would rightly make the resume start from iteration 0."""
    harness = start_harness(results, image, env)
    run = the_run(results)
    wait_for(lambda: (run.work_dir / "iter_10.pth").is_file() and both_nodes_training(run),
             what="both nodes training past the first checkpoint")
    return harness, run


def test_a_killed_node_fails_the_run_and_resume_finishes_it(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    harness, run = started_past_first_checkpoint(results, cpu_image, docker_env)
    client.containers.get(f"pspnet-{run.run_id}-node1").kill()
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 1, stderr
    status = run.status().model_dump()
    assert status["state"] == "failed" and "node1" in status["reason"] and "137" in status["reason"], status
    assert leftovers(client, run.run_id) == []  # node 0 stopped and removed, the network too
    resumed = run_cli("run", "--resume", run.run_id, "--results", str(results), "--quiet", "--no-report", env=docker_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(run.result_file.read_text())
    assert run.status().state == "succeeded" and result["iterations"] == 20
    assert log_has(run, "harness.worker: resuming from /workspace/run/work_dir/iter_10.pth")
    assert [p["iter"] for p in result["train"]] == [5, 10, 15, 20]
    assert leftovers(client, run.run_id) == []


def test_a_killed_harness_stops_every_node_and_resume_finishes_the_run(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    harness, run = started_past_first_checkpoint(results, cpu_image, docker_env)
    harness.send_signal(signal.SIGKILL)  # no handler runs: only the run's lock, watched in every container, can help
    harness.wait()

    def running() -> list[str]:
        return [c.name for c in client.containers.list(filters={"label": f"{LABEL_RUN}={run.run_id}"})]

    wait_for(lambda: not running(), 30, "every node's container to stop")
    assert run.effective_state() == "stale"
    resumed = run_cli("run", "--resume", run.run_id, "--results", str(results), "--quiet", "--no-report", env=docker_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    status = run.status()
    assert status.state == "succeeded" and status.attempts == 2
    assert json.loads(run.result_file.read_text())["iterations"] == 20
    assert leftovers(client, run.run_id) == []  # the killed attempt's containers and network too


def test_ctrl_c_stops_every_node(tmp_path, cpu_image, client, docker_env):
    results = tmp_path / "results"
    harness = start_harness(results, cpu_image, docker_env)
    run = the_run(results)
    wait_for(lambda: both_nodes_training(run), what="both nodes training")
    harness.send_signal(signal.SIGINT)
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 130, stderr
    assert run.status().state == "interrupted"
    assert leftovers(client, run.run_id) == []


def test_leftovers_of_an_earlier_attempt_are_removed_before_a_start(cpu_image, client):
    # A harness killed with SIGKILL leaves its (exited) node containers and the network; the run's
    # next attempt (--resume, under the run lock) removes them before creating its own.
    from harness.executors.docker_nodes import NodeGroup

    run_id = "20261201T000000Z-leftover_probe-abc123"
    network = client.networks.create(f"pspnet-{run_id}", driver="bridge", labels={LABEL_RUN: run_id})
    container = client.containers.create(cpu_image, ["true"], name=f"pspnet-{run_id}-node0", network=network.name,
                                         labels={LABEL_RUN: run_id})
    assert sorted(leftovers(client, run_id)) == sorted([container.name, network.name])
    NodeGroup(client, run_id, network.name).remove_leftovers()
    assert leftovers(client, run_id) == []


def stop_engine() -> None:
    """dockerd stopped as an operator or a package upgrade stops it (SIGTERM); the test starts it
    again with .ci/docker-up.sh for the tests that follow (same data root: the images stay)."""
    import os
    import time
    from pathlib import Path

    pidfile = Path(os.environ.get("PSPNET_DOCKER_RUN", "/run/pspnet-repro-docker")) / "dockerd.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_the_engine_stopped_mid_run_fails_the_run_naming_the_engine(tmp_path, cpu_image, client, docker_env):
    """M11: dockerd gets SIGTERM while both nodes train: the run ends failed (exit 1), its status
    written, the reason naming the engine; no traceback. The engine is started again afterwards."""
    results = tmp_path / "results"
    harness = start_harness(results, cpu_image, docker_env)
    try:
        run = the_run(results)
        wait_for(lambda: both_nodes_training(run), what="both nodes training")
        stop_engine()
        _, stderr = harness.communicate(timeout=180)
    finally:
        if harness.poll() is None:
            harness.kill()
        subprocess.run(["bash", str(REPO / ".ci" / "docker-up.sh")], check=True, capture_output=True, timeout=300)
    try:
        assert harness.returncode == 1, stderr
        assert "Traceback" not in stderr, stderr
        status = run.status()
        assert status.state == "failed" and "Docker engine" in status.reason, status
        assert status.finished is not None
    finally:
        from harness.executors.docker_nodes import NodeGroup

        NodeGroup(dx.connect(), run.run_id, f"pspnet-{run.run_id}").remove_leftovers()
