"""Slurm, the pure part: the ``sbatch`` script a run submits, and what a Slurm job state means
for the run. Nothing here runs a command; ``harness.executors.slurm`` submits and follows.

One task per node (``--ntasks-per-node=1``): each node's task is one torchrun that starts that
node's ranks, as mmsegmentation's ``tools/slurm_train.sh`` does with one task per GPU but with
torchrun doing the per-node fan-out (the same launch as the local and Docker executors).
Node names need not resolve (several ``slurmd`` on one host, or a cluster without DNS for its
node names), so the master address is the first node's ``NodeAddr`` from ``scontrol show node``.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Literal

ContainerMode = Literal["none", "pyxis", "docker"]
CONTAINER_MODES: tuple[str, ...] = ("none", "pyxis", "docker")

NODE_LOG_DIR = "nodes"
SBATCH_FILE = "job.sbatch"

# Slurm job state -> (run state, reason). Pending/running states are absent: the job goes on.
# CANCELLED and PREEMPTED stop a run that can continue (--resume): interrupted, as Ctrl-C.
FINAL_STATES: dict[str, tuple[str, str | None]] = {
    "COMPLETED": ("succeeded", None),
    "FAILED": ("failed", "Slurm job FAILED (a task exited non-zero)"),
    "CANCELLED": ("interrupted", "Slurm job CANCELLED"),
    "TIMEOUT": ("failed", "timeout (Slurm job TIMEOUT: the time limit was reached)"),
    "NODE_FAIL": ("failed", "Slurm job NODE_FAIL (a node of the job failed)"),
    "PREEMPTED": ("interrupted", "Slurm job PREEMPTED"),
    "OUT_OF_MEMORY": ("failed", "out of memory (Slurm job OUT_OF_MEMORY)"),
    "BOOT_FAIL": ("failed", "Slurm job BOOT_FAIL (a node could not boot)"),
    "DEADLINE": ("failed", "Slurm job DEADLINE (its deadline passed)"),
}
ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                           "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "REQUEUE_HOLD", "REQUEUE_FED"})


def run_state_of(slurm_state: str) -> tuple[str, str | None] | None:
    """The run's final state and reason for a Slurm job state, or None while the job goes on.
    ``CANCELLED by 0`` and other decorated forms count as their first word."""
    word = slurm_state.split()[0].rstrip("+") if slurm_state.strip() else ""
    if word in FINAL_STATES:
        return FINAL_STATES[word]
    if word in ACTIVE_STATES:
        return None
    return ("failed", f"Slurm job ended in state {word or '(none)'}")


@dataclass(frozen=True)
class SlurmJobSpec:
    """What the sbatch script needs; built from the plan by the executor."""

    job_name: str
    run_dir: str
    nodes: int
    procs_per_node: int
    worker_args: tuple[str, ...]  # after torchrun's own arguments, e.g. ("-m", "harness.worker", "--job", ...)
    python: str = "python"
    master_port: int = 29688
    environment: dict[str, str] = field(default_factory=dict)
    partition: str | None = None
    gres: str | None = None  # e.g. "gpu:8" or "npu:8", as the cluster names its devices
    time_limit_minutes: int | None = None
    container: ContainerMode = "none"
    image: str | None = None
    container_mounts: tuple[tuple[str, str, bool], ...] = ()  # (host, container, read_only)
    container_workdir: str | None = None


def torchrun_argv(spec: SlurmJobSpec, *, python: str) -> list[str]:
    """One node's launch; node rank and master address come from the shell at run time."""
    return [
        python, "-m", "torch.distributed.run",
        f"--nnodes={spec.nodes}",
        "--node_rank=$SLURM_NODEID",
        f"--nproc_per_node={spec.procs_per_node}",
        "--master_addr=$MASTER_ADDR",
        "--master_port=$MASTER_PORT",
        *spec.worker_args,
    ]


def _shell_words(argv: list[str]) -> str:
    # $SLURM_NODEID, $MASTER_ADDR and $MASTER_PORT expand on the node; everything else is quoted.
    out = []
    for word in argv:
        if "$" in word:
            prefix, _, var = word.partition("$")
            out.append(f'{shlex.quote(prefix) if prefix else ""}"${var}"')
        else:
            out.append(shlex.quote(word))
    return " ".join(out)


def node_command(spec: SlurmJobSpec) -> str:
    """What ``srun`` starts on every node, in the chosen container mode."""
    if spec.container == "none":
        return _shell_words(torchrun_argv(spec, python=spec.python))
    if spec.image is None:
        raise ValueError("a container mode needs the recipe's image")
    inner = torchrun_argv(spec, python="python")
    if spec.container == "docker":
        env = [f"--env={k}={v}" for k, v in sorted(spec.environment.items())]
        mounts = [f"--volume={h}:{c}:{'ro' if ro else 'rw'}" for h, c, ro in spec.container_mounts]
        workdir = [f"--workdir={spec.container_workdir}"] if spec.container_workdir else []
        docker = ["docker", "run", "--rm", "--init", "--network=host", "--ipc=host", *env, *mounts, *workdir,
                  f"--name=pspnet-{spec.job_name}-$SLURM_NODEID", spec.image]
        return _shell_words(docker + inner)
    return _shell_words(inner)  # pyxis: srun itself runs the task inside the image


def srun_options(spec: SlurmJobSpec) -> list[str]:
    options = [
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",
        # One node's failure ends the job instead of leaving the other node waiting for it.
        "--kill-on-bad-exit=1",
        f"--output={spec.run_dir}/{NODE_LOG_DIR}/node-%n.log",
    ]
    if spec.container == "pyxis":
        mounts = ",".join(f"{h}:{c}:{'ro' if ro else 'rw'}" for h, c, ro in spec.container_mounts)
        options += [f"--container-image={spec.image}"]
        if mounts:
            options += [f"--container-mounts={mounts}"]
        if spec.container_workdir:
            options += [f"--container-workdir={spec.container_workdir}"]
    return options


def render_sbatch(spec: SlurmJobSpec) -> str:
    """The batch script written into the run folder and submitted as it is."""
    directives = [
        f"--job-name={spec.job_name}",
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",
        f"--output={spec.run_dir}/slurm-%j.out",
        f"--chdir={spec.run_dir}",
    ]
    if spec.partition:
        directives.append(f"--partition={spec.partition}")
    if spec.gres:
        directives.append(f"--gres={spec.gres}")
    if spec.time_limit_minutes:
        directives.append(f"--time={spec.time_limit_minutes}")
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), "",
             "# Written by pspnet-repro's Slurm executor; submitted as it is.",
             "set -euo pipefail",
             'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
             "# Node names need not resolve: the master is the first node's NodeAddr.",
             'MASTER_ADDR=$(scontrol show node "$head_node" | sed -n "s/.*NodeAddr=\\([^ ]*\\).*/\\1/p")',
             f"MASTER_PORT={spec.master_port}",
             "export MASTER_ADDR MASTER_PORT"]
    for key, value in sorted(spec.environment.items()):
        lines.append(f"export {key}={shlex.quote(value)}")
    lines += [f"mkdir -p {shlex.quote(spec.run_dir)}/{NODE_LOG_DIR}",
              'echo "pspnet-repro: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, master $MASTER_ADDR:$MASTER_PORT"',
              f"srun {' '.join(shlex.quote(o) for o in srun_options(spec))} \\",
              f"  bash -c {shlex.quote('exec ' + node_command(spec))}", ""]
    return "\n".join(lines)
