"""Slurm, the pure part: the ``sbatch`` script a run submits, and what a Slurm job state means
for the run. Nothing here runs a command; ``harness.executors.slurm`` submits and follows.

One task per node (``--ntasks-per-node=1``): each node's task is one torchrun that starts that
node's ranks, as mmsegmentation's ``tools/slurm_train.sh`` does with one task per GPU but with
torchrun doing the per-node fan-out (the same launch as the local and Docker executors).
Node names need not resolve (several ``slurmd`` on one host, or a cluster without DNS for its
node names), so the master address is the first node's ``NodeAddr`` from ``scontrol show node``.

No value from outside ends a line or a quote: ``#SBATCH`` lines hold only words the executor has
checked (``harness.core.words``) and the run id; paths (the results folder may hold spaces, quotes,
``$(...)``, even a newline) are ``sbatch``'s own arguments (``sbatch_arguments``), and every word
of the script body is quoted (``shlex``; the scheduler's variables by ``harness.planning.launch.shell_word``).
A '%' in a path is doubled where Slurm reads file-name patterns (``--output``): '%%' is a '%'.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Literal

from harness.core.words import GRES, SLURM_NAMES, checked
from harness.planning.launch import NodeLaunch, shell_word
from harness.store.layout import NODE_LOG, NODES_DIR

ContainerMode = Literal["none", "pyxis", "docker"]
CONTAINER_MODES: tuple[str, ...] = ("none", "pyxis", "docker")

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
    """What the sbatch script needs; built from the plan by the executor. ``launch`` is a node's
    launch under ``scheduler_rendezvous('slurm', port)`` (the same for every node: its node rank
    and master address are ``$SLURM_NODEID`` and ``$MASTER_ADDR``, expanded on the node)."""

    job_name: str
    run_dir: str
    nodes: int
    launch: NodeLaunch
    partition: str | None = None
    gres: str | None = None  # e.g. "gpu:8" or "npu:8", as the cluster names its devices
    time_limit_minutes: int | None = None
    container: ContainerMode = "none"
    image: str | None = None
    container_mounts: tuple[tuple[str, str, bool], ...] = ()  # (host, container, read_only)
    container_workdir: str | None = None


def node_command(spec: SlurmJobSpec) -> str:
    """What ``srun`` starts on every node, in the chosen container mode. The rendezvous setup
    (scontrol) ran once in the batch script: containers need not have Slurm's commands."""
    command = spec.launch.command_line()
    if spec.container == "none":
        return command
    if spec.image is None:
        raise ValueError("a container mode needs the recipe's image")
    if spec.container == "docker":
        env = [f"--env={k}={v}" for k, v in sorted(spec.launch.environment.items())]
        mounts = [f"--volume={h}:{c}:{'ro' if ro else 'rw'}" for h, c, ro in spec.container_mounts]
        workdir = [f"--workdir={spec.container_workdir}"] if spec.container_workdir else []
        docker = ["docker", "run", "--rm", "--init", "--network=host", "--ipc=host", *env, *mounts, *workdir,
                  f"--name={spec.job_name}-node$SLURM_NODEID", spec.image]
        return " ".join([*(shell_word(w) for w in docker), command])
    return command  # pyxis: srun itself runs the task inside the image


def srun_options(spec: SlurmJobSpec) -> list[str]:
    options = [
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",
        # One node's failure ends the job instead of leaving the other node waiting for it.
        "--kill-on-bad-exit=1",
        # A resumed run's nodes continue their logs, as train.log does (the follower skips what is there).
        "--open-mode=append",
        f"--output={slurm_pattern_literal(spec.run_dir)}/{NODES_DIR}/{NODE_LOG.format(node='%n')}",
    ]
    if spec.container == "pyxis":
        mounts = ",".join(f"{h}:{c}:{'ro' if ro else 'rw'}" for h, c, ro in spec.container_mounts)
        options += [f"--container-image={spec.image}"]
        if mounts:
            options += [f"--container-mounts={mounts}"]
        if spec.container_workdir:
            options += [f"--container-workdir={spec.container_workdir}"]
    return options


def partition_word(value: str) -> str:
    return checked(value, SLURM_NAMES, "--partition", "a Slurm partition name or a comma-separated list of them "
                                                      "(letters, digits, _ . -)")


def gres_word(value: str) -> str:
    return checked(value, GRES, "--gres", "generic resources as name[:type][:count], comma-separated, e.g. gpu:8 "
                                          "or npu:8 (letters, digits, _ . -)")


def slurm_pattern_literal(path: str) -> str:
    """``path`` where Slurm expands file-name patterns (%j, %n...): each '%' taken literally."""
    return path.replace("%", "%%")


def sbatch_arguments(spec: SlurmJobSpec) -> list[str]:
    """The paths of the job, given to ``sbatch`` as arguments (never script text): the batch log
    ``slurm-<job id>.out`` and the working directory, both the run folder."""
    return [f"--chdir={spec.run_dir}", f"--output={slurm_pattern_literal(spec.run_dir)}/slurm-%j.out"]


def render_sbatch(spec: SlurmJobSpec) -> str:
    """The batch script written into the run folder and submitted as it is, with
    ``sbatch_arguments``. Directives hold checked words only (see the module's docstring)."""
    directives = [
        f"--job-name={spec.job_name}",
        f"--nodes={spec.nodes}",
        "--ntasks-per-node=1",
    ]
    if spec.partition:
        directives.append(f"--partition={partition_word(spec.partition)}")
    if spec.gres:
        directives.append(f"--gres={gres_word(spec.gres)}")
    if spec.time_limit_minutes:
        directives.append(f"--time={spec.time_limit_minutes}")
    port = re.search(r"--master_port=(\S+)", " ".join(spec.launch.argv))
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), "",
             "# Written by pspnet-repro's Slurm executor; submitted as it is, with sbatch --chdir=RUN_FOLDER",
             "# --output=RUN_FOLDER/slurm-%j.out (the folder of this file).",
             "set -euo pipefail",
             *spec.launch.setup,
             f"MASTER_PORT={shlex.quote(port.group(1)) if port else ''}",
             "export MASTER_ADDR MASTER_PORT"]
    for key, value in sorted(spec.launch.environment.items()):
        lines.append(f"export {key}={shlex.quote(value)}")
    lines += [f"mkdir -p {shlex.quote(spec.run_dir)}/{NODES_DIR}",
              'echo "pspnet-repro: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, master ${MASTER_ADDR-}:$MASTER_PORT"',
              f"srun {' '.join(shlex.quote(o) for o in srun_options(spec))} \\",
              f"  bash -c {shlex.quote('exec ' + node_command(spec))}", ""]
    return "\n".join(lines)
