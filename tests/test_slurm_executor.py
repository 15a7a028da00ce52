"""The Slurm executor: ``harness run --executor slurm`` on the real two-node cluster
(``.ci/slurm-up.sh``), and the pure mapping of Slurm's final word onto the run's outcome."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.errors import BadInput
from harness.executors.slurm import SlurmExecutor, failed_node_of, outcome_of
from harness.executors.slurm_client import JobInfo, job_info

SHORT = ["--set", "train.iterations=20", "--set", "train.val_interval=20", "--set", "train.checkpoint_interval=10",
         "--set", "train.log_interval=5"]


def harness(*args: str, results: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args, "--results", str(results)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finished(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def only_run(results: Path) -> Path:
    runs = list((results / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def job_gone(job_id: str) -> bool:
    done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return done.stdout.strip() == ""


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def first_checkpoint_saved(results: Path) -> bool:
    return any((results / "runs").glob("*/work_dir/last_checkpoint")) if (results / "runs").is_dir() else False


def assert_succeeded_on_both_nodes(run: Path, results: Path) -> None:
    assert status(run)["state"] == "succeeded", status(run)
    assert (run / "job.sbatch").read_text().startswith("#!/bin/bash")
    for node in (0, 1):
        assert f"rank {node} of 2 started" in (run / "nodes" / f"node-{node}.log").read_text()
    result = json.loads((run / "result.json").read_text())
    assert result["device"]["count"] == 2 and result["iterations"] == 20
    # fps counts every rank of every node: batch per device x 2 ranks / s per iteration
    assert result["fps"] == pytest.approx(2 * 2 / result["mean_iter_time_s"])
    assert f"CPU-2p (2 nodes) smoke_cpu_2node `{run.name}`" in (results / "README.md").read_text()


@pytest.mark.slurm
@pytest.mark.slow
def test_two_node_smoke_through_slurm(tmp_path, slurm_cluster):
    started = time.monotonic()
    code, out = finished(harness("run", "recipes/smoke_cpu_2node.yaml", "--executor", "slurm", "--partition", "debug",
                                 "--quiet", *SHORT, results=tmp_path))
    print(f"two-node Slurm smoke: {time.monotonic() - started:.0f} s wall")
    assert code == 0, out
    run = only_run(tmp_path)
    assert_succeeded_on_both_nodes(run, tmp_path)
    assert job_gone(status(run)["slurm_job_id"])
    assert json.loads((run / "plan.json").read_text())["executor_options"] == {"partition": "debug"}


ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")


def ended(job_id: str) -> bool:
    """Slurm has the job's final state (it keeps finished jobs for MinJobAge, 300 s by default)."""
    info = job_info(job_id)
    return info is not None and info.state.split()[0] not in ACTIVE


def started_past_first_checkpoint(results: Path) -> tuple[subprocess.Popen, Path, str]:
    """A two-node smoke job running past its checkpoint of iteration 10: the harness process, the
    run folder and the Slurm job id."""
    process = harness("run", "recipes/smoke_cpu_2node.yaml", "--executor", "slurm", "--quiet", "--no-report", *SHORT,
                      results=results)
    try:
        wait_for(lambda: first_checkpoint_saved(results), 180, "the checkpoint of iteration 10")
    except BaseException:
        process.kill()
        raise
    run = only_run(results)
    return process, run, status(run)["slurm_job_id"]


def assert_resume_finishes(run: Path, results: Path, old_job_id: str) -> None:
    code, out = finished(harness("run", "--resume", run.name, "--quiet", results=results))
    assert code == 0, out
    assert "resuming from" in (run / "train.log").read_text() and "Iter(train) [15/20]" in (run / "train.log").read_text()
    assert status(run)["slurm_job_id"] != old_job_id and status(run)["attempts"] == 2
    assert_succeeded_on_both_nodes(run, results)


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_job_is_interrupted_and_resume_completes_it(tmp_path, slurm_cluster):
    process, run, job_id = started_past_first_checkpoint(tmp_path)
    try:
        subprocess.run(["scancel", job_id], check=True)
        code, out = finished(process, 120)
    finally:
        process.kill()
    assert code == 130, out
    assert status(run)["state"] == "interrupted" and status(run)["reason"] == "Slurm job CANCELLED", status(run)
    assert job_gone(job_id)
    assert_resume_finishes(run, tmp_path, job_id)


def node_processes(run: Path, node_id: int) -> list[int]:
    """The processes of one Slurm node's share of this run. Both slurmd run on this host, so a
    node is told apart by the SLURM_NODEID its step gave every process it started."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            environment = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if str(run).encode() in command and f"SLURM_NODEID={node_id}".encode() in environment:
            found.append(int(proc.name))
    return found


@pytest.mark.slurm
@pytest.mark.slow
def test_a_killed_node_fails_the_run_naming_it_and_resume_finishes_it(tmp_path, slurm_cluster):
    process, run, job_id = started_past_first_checkpoint(tmp_path)
    try:
        victims = node_processes(run, 1)
        assert victims, "node 1 (n2) should be training"
        for pid in victims:  # the machine n2 is gone: every process of its share at once
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code, out = finished(process, 180)
    finally:
        process.kill()
    assert code not in (0, 130), out
    assert status(run)["state"] == "failed", status(run)
    assert status(run)["reason"].startswith("node n2 failed"), status(run)
    assert job_gone(job_id)
    wait_for(lambda: not node_processes(run, 0) and not node_processes(run, 1), 30, "nothing of the run left running")
    assert_resume_finishes(run, tmp_path, job_id)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_killed_harness_has_its_job_cancelled_by_the_workers(tmp_path, slurm_cluster):
    process, run, job_id = started_past_first_checkpoint(tmp_path)
    process.send_signal(signal.SIGKILL)  # no handler runs: the workers find the run's lock free and scancel
    process.wait()
    wait_for(lambda: ended(job_id), 60, "the job to end")
    assert job_info(job_id).state.startswith("CANCELLED"), job_info(job_id)  # not run on to its end unfollowed
    wait_for(lambda: job_gone(job_id), 60, "the job to leave the queue")
    wait_for(lambda: not node_processes(run, 0) and not node_processes(run, 1), 30, "nothing of the run left running")
    code, out = finished(harness("runs", "--json", results=tmp_path))
    assert code == 0 and json.loads(out)[0]["state"] == "stale", out
    assert_resume_finishes(run, tmp_path, job_id)


@pytest.mark.slurm
@pytest.mark.slow
def test_sigterm_to_the_harness_cancels_the_job(tmp_path, slurm_cluster):
    process = harness("run", "recipes/smoke_cpu_2node.yaml", "--executor", "slurm", "--quiet", "--no-report", *SHORT,
                      results=tmp_path)
    try:
        wait_for(lambda: (tmp_path / "runs").is_dir() and "slurm_job_id" in status(only_run(tmp_path)), 120, "job id")
        run = only_run(tmp_path)
        job_id = status(run)["slurm_job_id"]
        wait_for(lambda: (run / "nodes" / "node-1.log").is_file(), 120, "the job to run on both nodes")
        process.send_signal(signal.SIGTERM)
        code, out = finished(process, 120)
    finally:
        process.kill()
    assert code == 130, out
    assert status(run)["state"] == "interrupted", status(run)
    wait_for(lambda: job_gone(job_id), 30, "the cancelled job to leave the queue (scancel is asynchronous)")


def test_bad_partition_is_bad_input_before_anything_is_written(tmp_path, slurm_cluster):
    code, out = finished(harness("run", "recipes/smoke_cpu_2node.yaml", "--executor", "slurm", "--partition", "nope",
                                 results=tmp_path))
    assert code == 2 and "--partition nope: no such Slurm partition" in out and "Traceback" not in out, out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_slurm_options_go_with_the_slurm_executor(tmp_path):
    code, out = finished(harness("run", "recipes/smoke_cpu.yaml", "--partition", "debug", results=tmp_path))
    assert code == 2 and "go with --executor slurm" in out, out


def test_more_nodes_than_one_still_refused_by_one_node_executors(tmp_path):
    code, out = finished(harness("run", "recipes/smoke_cpu_2node.yaml", "--executor", "local", results=tmp_path))
    assert code == 2 and "device.nodes" in out, out


# -- Slurm's word -> Outcome (pure) ------------------------------------------------------------------


def info(state: str, exit_code: int = 0, signal_number: int = 0) -> JobInfo:
    return JobInfo("42", state, exit_code, signal_number, "n[1-2]", "None")


BATCH_LOG = """pspnet-repro: job 42 on n[1-2], master 127.0.0.1:29500
srun: error: n2: task 1: Exited with exit code 1
srun: error: n1: task 0: Killed
"""


def test_completed_is_success():
    outcome = outcome_of(info("COMPLETED"))
    assert outcome.exit_code == 0 and not outcome.interrupted and outcome.details["slurm_job_id"] == "42"


@pytest.mark.parametrize("state", ["CANCELLED", "CANCELLED by 0", "PREEMPTED"])
def test_cancelled_and_preempted_are_interrupted(state):
    outcome = outcome_of(info(state, 0, 15))
    assert (outcome.exit_code, outcome.interrupted) == (130, True)
    assert outcome.reason == f"Slurm job {state.split()[0]}"


def test_failed_names_the_node_whose_task_failed_first():
    outcome = outcome_of(info("FAILED", 1), BATCH_LOG)
    assert (outcome.exit_code, outcome.failed_node, outcome.interrupted) == (1, "n2", False)
    assert failed_node_of("srun: error: n1: task 0: Killed\n") == "n1"
    # a node killed outright: its peer then fails on the vanished connection (the CI cluster's log)
    assert failed_node_of("srun: error: n2: task 1: Killed\n"
                          "srun: launch/slurm: _step_signal: Terminating StepId=72.0\n"
                          "srun: error: n1: task 0: Exited with exit code 1\n") == "n2"
    assert failed_node_of("nothing from srun") is None


def test_timeout_oom_node_fail_and_signals():
    assert outcome_of(info("TIMEOUT", 0, 15)).timed_out
    assert outcome_of(info("OUT_OF_MEMORY", 0, 9)).oom_killed
    node_fail = outcome_of(info("NODE_FAIL", 0, 9))
    assert node_fail.exit_code == 137 and "NODE_FAIL" in node_fail.reason and not node_fail.interrupted
    assert outcome_of(info("FAILED", 0)).exit_code == 1  # a failure never reads as exit 0


def test_executor_options_are_checked_and_recorded():
    assert SlurmExecutor(partition="debug", gres="gpu:8").options() == {"partition": "debug", "gres": "gpu:8"}
    assert SlurmExecutor(container="pyxis", image="img:1").options() == {"container": "pyxis", "image": "img:1"}
    with pytest.raises(BadInput):
        SlurmExecutor(container="podman", image="img:1")
    with pytest.raises(BadInput):
        SlurmExecutor(container="docker")
    assert SlurmExecutor.multi_node and SlurmExecutor.plan_layout == "local"


def test_plan_for_slurm_shows_the_launch_the_job_runs(tmp_path):
    # `harness plan` applies the executor's own layout, as a run does (no cluster is asked)
    done = subprocess.run([sys.executable, "-m", "harness", "plan", "recipes/smoke_cpu_2node.yaml", "--executor", "slurm",
                           "--json"], capture_output=True, text=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    for argv in [plan["launch"]["argv"], *(launch["argv"] for launch in plan["nodes"]["launches"])]:
        assert "--node_rank=$SLURM_NODEID" in argv and "--master_addr=$MASTER_ADDR" in argv, argv
    assert "scontrol show node" in plan["nodes"]["launches"][0]["setup"][0]


# -- every option is checked where the executor is built, so --resume re-checks it (issue 17) ------


@pytest.mark.parametrize("options, field", [
    ({"gres": "none\ntouch pwned"}, "--gres"), ({"gres": "gpu:8 --wrap=x"}, "--gres"),
    ({"partition": "debug\ntouch pwned"}, "--partition"), ({"partition": "Bad Queue;$(x)"}, "--partition"),
    ({"container": "pyxis", "image": "img:1\ntouch pwned"}, "image"),
    ({"container": "docker", "image": "imäge:1"}, "image"),
])
def test_the_constructor_refuses_what_cannot_be_a_slurm_word(options, field):
    with pytest.raises(BadInput) as caught:
        SlurmExecutor(**options)
    message = str(caught.value)
    assert message.startswith(field) and "\n" not in message, message


def test_real_slurm_words_are_accepted():
    for gres in ("gpu:8", "npu:8", "gpu:a100:2", "gpu:1,mps:100", "none"):
        assert SlurmExecutor(gres=gres).gres == gres
    assert SlurmExecutor(partition="debug,gpu-long").partition == "debug,gpu-long"
    assert SlurmExecutor(container="pyxis", image="nvcr.io#nvidia/pytorch:24.01-py3").image


def test_injected_gres_is_refused_before_anything_is_written(tmp_path):
    code, out = finished(harness("run", str(Path.cwd() / "recipes/smoke_cpu.yaml"), "--executor", "slurm",
                                 "--gres", "none\ntouch pwned",
                                 results=tmp_path / "results", cwd=tmp_path))
    assert code == 2 and out.count("\n") == 1 and "--gres" in out and "Traceback" not in out, out
    assert not (tmp_path / "results").exists() and not (tmp_path / "pwned").exists()


def test_unknown_recorded_option_is_one_line_of_bad_input():
    from harness.executors import build_executor

    with pytest.raises(BadInput) as caught:
        build_executor("slurm", {"gress": "gpu:8"}, "plan.json")
    assert "plan.json: executor_options: unknown option 'gress'" in str(caught.value)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_results_path_with_spaces_quotes_newline_and_percent_works(tmp_path, slurm_cluster):
    """S4/M7: the results folder's path is never script text: the run succeeds in that folder and
    nothing in the path runs; '%j' in it stays literal (the batch log lands in the run folder)."""
    results = tmp_path / "it's a \"results\" $(touch pwned) `touch pwned` %j\ntouch pwned #"
    code, out = finished(harness("run", str(Path.cwd() / "recipes/smoke_cpu.yaml"), "--executor", "slurm", "--quiet",
                                 "--no-report", *SHORT, results=results, cwd=tmp_path), 400)
    assert code == 0, out
    run = only_run(results)
    assert status(run)["state"] == "succeeded", status(run)
    assert (run / f"slurm-{status(run)['slurm_job_id']}.out").is_file()
    assert json.loads((run / "result.json").read_text())["iterations"] == 20
    assert not [p for p in tmp_path.rglob("pwned")], "a command from the path ran"
    # S6's route: an option edited into plan.json is checked again when --resume rebuilds the executor
    plan = json.loads((run / "plan.json").read_text())
    plan["executor_options"]["gres"] = "none\ntouch pwned"
    (run / "plan.json").write_text(json.dumps(plan))
    before = (run / "status.json").read_text()
    code, out = finished(harness("run", "--resume", run.name, "--force", results=results, cwd=tmp_path))
    assert code == 2 and "--gres 'none\\ntouch pwned': expected" in out and "Traceback" not in out, out
    assert (run / "status.json").read_text() == before and not [p for p in tmp_path.rglob("pwned")]
