"""The Slurm executor's pieces: the sbatch script (pure), the state mapping, and the client against
a real two-node cluster (``.ci/slurm-up.sh``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.executors import slurm_client
from harness.executors.slurm_batch import SlurmJobSpec, render_sbatch, run_state_of, sbatch_arguments
from harness.planning.launch import build_node_launches, scheduler_rendezvous

WORKER = ("-m", "harness.worker", "--job", "/results/runs/r1/job.json")


def spec(*, procs_per_node=8, worker=WORKER, python="/venv/bin/python", master_port=29501,
         environment=None, **changes) -> SlurmJobSpec:
    launch = build_node_launches(
        python=python, worker=worker, nodes=2, nproc_per_node=procs_per_node,
        rendezvous=scheduler_rendezvous("slurm", master_port),
        environment={"HCCL_CONNECT_TIMEOUT": "1200"} if environment is None else environment,
    )[0]
    return SlurmJobSpec(**{"job_name": "pspnet-r1", "run_dir": "/results/runs/r1", "nodes": 2, "launch": launch, **changes})


def test_sbatch_script_one_torchrun_per_node_with_the_first_nodes_address():
    script = render_sbatch(spec(partition="npu", gres="npu:8", time_limit_minutes=90))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives = [line for line in lines if line.startswith("#SBATCH ")]
    assert directives == [
        "#SBATCH --job-name=pspnet-r1", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --partition=npu", "#SBATCH --gres=npu:8", "#SBATCH --time=90",
    ]
    # the paths are sbatch's own arguments (issue 17: no path in script text)
    assert sbatch_arguments(spec()) == ["--chdir=/results/runs/r1", "--output=/results/runs/r1/slurm-%j.out"]
    assert any(line.startswith('MASTER_ADDR="$(scontrol show node "$(scontrol show hostnames "$SLURM_JOB_NODELIST"')
               for line in lines)
    assert "MASTER_PORT=29501" in lines
    assert "export HCCL_CONNECT_TIMEOUT=1200" in lines
    srun = script[script.index("srun "):]
    assert "--kill-on-bad-exit=1" in srun and "--output=/results/runs/r1/nodes/node-%n.log" in srun
    assert ("exec /venv/bin/python -m torch.distributed.run --nnodes=2 \"--node_rank=$SLURM_NODEID\" "
            "--nproc_per_node=8 \"--master_addr=$MASTER_ADDR\" --master_port=29501 "
            "-m harness.worker --job /results/runs/r1/job.json") in srun
    assert "WORLD_SIZE" not in script  # never the operators' ambiguous variable


def test_container_modes_pyxis_and_docker():
    mounts = (("/data/VOCdevkit", "/data/VOCdevkit", True), ("/results/runs/r1", "/workspace/run", False))
    pyxis = render_sbatch(spec(python="python", container="pyxis", image="pspnet-repro/npu:abc", container_mounts=mounts,
                               container_workdir="/workspace/run"))
    assert "--container-image=pspnet-repro/npu:abc" in pyxis
    assert "--container-mounts=/data/VOCdevkit:/data/VOCdevkit:ro,/results/runs/r1:/workspace/run:rw" in pyxis
    assert "exec python -m torch.distributed.run" in pyxis
    docker = render_sbatch(spec(python="python", container="docker", image="pspnet-repro/gpu:abc", container_mounts=mounts))
    assert "exec docker run --rm --init --network=host --ipc=host --env=HCCL_CONNECT_TIMEOUT=1200" in docker
    assert "--volume=/results/runs/r1:/workspace/run:rw" in docker
    assert "--name=pspnet-r1-node$SLURM_NODEID" in docker
    assert "pspnet-repro/gpu:abc python -m torch.distributed.run --nnodes=2" in docker
    with pytest.raises(ValueError):
        render_sbatch(spec(container="docker"))


@pytest.mark.parametrize("state, expected", [
    ("COMPLETED", "succeeded"), ("FAILED", "failed"), ("CANCELLED", "interrupted"), ("CANCELLED by 0", "interrupted"),
    ("TIMEOUT", "failed"), ("NODE_FAIL", "failed"), ("PREEMPTED", "interrupted"), ("OUT_OF_MEMORY", "failed"),
    ("WEIRD", "failed"),
])
def test_final_states(state, expected):
    assert run_state_of(state)[0] == expected


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "REQUEUED"])
def test_active_states_go_on(state):
    assert run_state_of(state) is None


ALLREDUCE = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.tensor([dist.get_rank() + 1.0]); dist.all_reduce(t)
# one write per line: the node's two ranks share its log, and an unbuffered (-u) print writes the
# text and its newline separately, so lines of two ranks could run together
os.write(1, f"rank {dist.get_rank()} of {dist.get_world_size()} on {os.environ['SLURMD_NODENAME']} sum {t.item():.0f}\\n".encode())
dist.barrier()
dist.destroy_process_group()  # a gloo group left to the interpreter's exit can abort (SIGABRT)
"""


def _sources(run: Path):
    return lambda: sorted((run / "nodes").glob("node-*.log")) + sorted(run.glob("slurm-*.out"))


@pytest.mark.slurm
def test_two_nodes_rendezvous_over_slurm(tmp_path, slurm_cluster):
    """4 gloo ranks, 2 per node, over two slurmd nodes: every rank sees the same all-reduce."""
    script = tmp_path / "allreduce.py"
    script.write_text(ALLREDUCE)
    job = spec(run_dir=str(tmp_path), procs_per_node=2, worker=(str(script),), python=sys.executable,
               master_port=29731, environment={})
    (tmp_path / "job.sbatch").write_text(render_sbatch(job))
    job_id = slurm_client.submit(tmp_path / "job.sbatch", sbatch_arguments(job))
    seen: list[str] = []
    info = slurm_client.follow(job_id, slurm_client.LogFollower(_sources(tmp_path), tmp_path / "train.log",
                                                                seen.append, "node-0.log"), poll_s=0.5)
    assert info.state == "COMPLETED", (tmp_path / "train.log").read_text()
    log = (tmp_path / "train.log").read_text()
    ranks = sorted(line.split(" on ")[0] for line in log.splitlines() if line.startswith("rank "))
    assert ranks == [f"rank {r} of 4" for r in range(4)], log
    assert all(line.endswith("sum 10") for line in log.splitlines() if line.startswith("rank "))
    assert {line.split(" on ")[1].split()[0] for line in log.splitlines() if line.startswith("rank ")} == set(slurm_cluster[:2])
    assert any(line.startswith("rank ") for line in seen)  # node 0's lines reach the progress callback


@pytest.mark.slurm
def test_cancel_ends_the_job_cancelled(tmp_path, slurm_cluster):
    (tmp_path / "sleep.sbatch").write_text("#!/bin/bash\n#SBATCH --nodes=2\n#SBATCH --output=/dev/null\nsrun sleep 300\n")
    job_id = slurm_client.submit(tmp_path / "sleep.sbatch")
    deadline = time.monotonic() + 30
    while slurm_client.job_info(job_id).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    slurm_client.cancel(job_id)
    info = slurm_client.follow(job_id, slurm_client.LogFollower(lambda: [], tmp_path / "train.log", None, ""), poll_s=0.3)
    assert run_state_of(info.state) == ("interrupted", "Slurm job CANCELLED")


def test_sbatch_refusal_is_one_line_of_bad_input(tmp_path, slurm_cluster):
    from harness.core.errors import BadInput

    (tmp_path / "bad.sbatch").write_text("#!/bin/bash\n#SBATCH --partition=no-such-partition\ntrue\n")
    with pytest.raises(BadInput) as caught:
        slurm_client.submit(tmp_path / "bad.sbatch")
    assert "bad.sbatch: sbatch refused the job" in str(caught.value) and "\n" not in str(caught.value)


# -- untrusted strings never become script text (issue 17: S3, S4, M7) -------------------------------

HOSTILE_DIR = "/r/it's a \"dir\" $(touch pwned) `touch pwned` %j\ntouch pwned #/runs/r1"


def test_no_path_is_a_directive_and_paths_go_to_sbatch_as_arguments():
    """A path may hold anything but NUL; an #SBATCH line ends at a newline, so paths travel as sbatch's
    own arguments (argv, no shell, no script text), '%' escaped so Slurm takes it literally."""
    from harness.executors.slurm_batch import sbatch_arguments

    job = spec(run_dir=HOSTILE_DIR)
    script = render_sbatch(job)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert directives == ["#SBATCH --job-name=pspnet-r1", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1"]
    escaped = HOSTILE_DIR.replace("%", "%%")
    assert sbatch_arguments(job) == [f"--chdir={HOSTILE_DIR}", f"--output={escaped}/slurm-%j.out"]
    assert f"--output={escaped}/nodes/node-%n.log" in shlex_words(script[script.index("srun "):])


def shlex_words(text: str) -> list[str]:
    import shlex

    return shlex.split(text.replace("\\\n", " "))


def test_a_hostile_path_stays_inside_its_quotes(tmp_path):
    """bash reads the script's commands: the hostile path adds none (each command named below is the
    script's own), and the lock path reaches the environment intact."""
    import subprocess

    job = spec(run_dir=HOSTILE_DIR, environment={"PSPNET_RUN_LOCK": HOSTILE_DIR + "/.lock"}, python="python",
               container="docker", image="img:1", container_mounts=((HOSTILE_DIR, HOSTILE_DIR, False),))
    script = render_sbatch(job)
    done = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Print the words bash would run, with srun and scontrol as echo: no `touch` among the commands
    probe = ("srun() { printf '<%s>\\n' srun \"$@\"; }; scontrol() { :; }; mkdir() { printf '<%s>\\n' mkdir \"$@\"; }\n"
             + script.split("set -euo pipefail\n", 1)[1])
    words = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                           env={"PATH": "/usr/bin:/bin", "SLURM_NODEID": "0"})
    assert words.returncode == 0, words.stderr
    assert not (tmp_path / "pwned").exists()
    assert f"<{HOSTILE_DIR}/nodes>" in words.stdout
    inner = words.stdout.split("<-c>\n<", 1)[1].rsplit(">", 1)[0]
    assert f"--volume={HOSTILE_DIR}:{HOSTILE_DIR}:rw" in shlex_words(inner)
    assert "--name=pspnet-r1-node$SLURM_NODEID" in inner  # the one expression, expanded on the node


# -- a controller outage is waited out (issue 17: M6) -------------------------------------------------


def test_backoff_doubles_to_a_cap_and_gives_up_after_the_limit():
    now = [0.0]
    backoff = slurm_client.Backoff(limit_s=120, first_s=1, cap_s=15, clock=lambda: now[0])
    delays = []
    while (delay := backoff.failed()) is not None:
        delays.append(delay)
        now[0] += delay + 0.5  # each try itself takes a moment
    assert delays[:6] == [1, 2, 4, 8, 15, 15] and set(delays[4:-1]) == {15} and 0 < delays[-1] <= 15
    assert 110 <= now[0] <= 140, now[0]  # gave up about 120 s after the first failure, not before
    backoff.answered()
    assert backoff.failed() == 1  # a new outage starts over


STATE_DIR = Path(os.environ.get("PSPNET_SLURM_STATE", "/run/pspnet-repro-slurm"))


def controller_up() -> bool:
    done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return "is UP" in done.stdout


def stop_controller_for(seconds: float) -> None:
    """slurmctld stopped (SIGTERM: it saves its state) and started again, as an operator restarts it."""
    pid = int((STATE_DIR / "slurmctld.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(seconds)
    finally:
        subprocess.run(["/usr/sbin/slurmctld"], check=True)
        deadline = time.monotonic() + 60
        while not controller_up() and time.monotonic() < deadline:
            time.sleep(0.5)


@pytest.mark.slurm
def test_following_a_job_survives_a_controller_restart(tmp_path, slurm_cluster):
    """The controller is away for 20 s while the job runs: the job is followed to its real end."""
    (tmp_path / "sleep.sbatch").write_text("#!/bin/bash\n#SBATCH --nodes=1\nsrun sleep 35\necho done\n")
    job_id = slurm_client.submit(tmp_path / "sleep.sbatch", [f"--output={tmp_path}/slurm-%j.out"])
    deadline = time.monotonic() + 30
    while slurm_client.job_info(job_id).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    outage = threading.Thread(target=stop_controller_for, args=(20,))
    outage.start()
    try:
        info = slurm_client.follow(job_id, slurm_client.LogFollower(_sources(tmp_path), tmp_path / "train.log", None, ""),
                                   poll_s=0.5)
    finally:
        outage.join()
    assert controller_up()
    assert info.state == "COMPLETED", info
    assert "done" in (tmp_path / "train.log").read_text()
