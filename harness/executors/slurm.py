"""Run a plan as a Slurm batch job: one task per node, each a torchrun (``harness.executors.slurm_batch``).

The batch script is written into the run folder (``job.sbatch``) and submitted as it is; the job
is followed with ``scontrol`` until it ends, its nodes' logs copied into ``train.log``. The nodes
share the run folder at the same path (a shared file system on a real cluster), so the plan is laid
out as for a local run; in the container modes the run, dataset and inputs are mounted at the
same paths.

Training never outlives the harness: the workers watch the run's lock (``harness.store.lifeline``) in
the shared run folder; when nobody holds it they cancel the job (``scancel $SLURM_JOB_ID``) and
stop. Ctrl-C / SIGTERM to the harness cancels the job through ``stop()``.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from harness.core.errors import EXIT_INTERRUPTED, EXIT_TIMEOUT, BadInput, EnvironmentNotReady
from harness.core.words import image_reference
from harness.executors import register
from harness.executors.base import Executor, ExecutorOption, LineSink, Outcome
from harness.executors.slurm_batch import (CONTAINER_MODES, SlurmJobSpec, gres_word, partition_word, render_sbatch,
                                            run_state_of, sbatch_arguments)
from harness.executors.slurm_client import (ControllerUnreachable, JobInfo, LogFollower, cancel, follow, job_info,
                                           require_slurm, submit)
from harness.planning.launch import NodeLaunch, node_launches, scheduler_rendezvous
from harness.planning.spec import LaunchSpec
from harness.store.layout import NODE_LOG, NODES_DIR, SBATCH_FILE
from harness.store.lifeline import ENV_RUN_LOCK, ENV_TRAINER_LOCK

POLL_S = 1.0
STOP_WAIT_S = 60  # scancel -> the job has left (Slurm's KillWait is 30 s by default)
PROGRESS_LOG = "node-0.log"  # node 0 runs rank 0, whose lines feed the progress display
_SRUN_ERROR = re.compile(r"srun: error: (\S+): tasks? [\d,\-]+: (.+)")


def failed_node_of(batch_log: str) -> str | None:
    """The node whose task ended first, from srun's lines in the batch log. What follows says
    nothing about the culprit: with ``--kill-on-bad-exit`` srun kills the other tasks ('Killed'),
    and a rank whose peer vanished exits with an error of its own. Seen on the CI cluster: n2's
    processes killed -> 'n2: task 1: Killed', then 'n1: task 0: Exited with exit code 1'."""
    first = _SRUN_ERROR.search(batch_log)
    return first.group(1) if first else None


def outcome_of(info: JobInfo, batch_log: str = "") -> Outcome:
    """How the attempt ended, from Slurm's final word on the job and its batch log."""
    final = run_state_of(info.state)
    state, reason = final if final else ("failed", f"Slurm job still {info.state} when the harness stopped following")
    details = {"slurm_job_id": info.job_id, "slurm_state": info.state, "slurm_nodes": info.nodes}
    word = info.state.split()[0] if info.state.strip() else ""
    if state == "succeeded":
        return Outcome(exit_code=0, details=details)
    if state == "interrupted":
        return Outcome(exit_code=EXIT_INTERRUPTED, interrupted=True, reason=reason, details=details)
    code = 128 + info.signal if info.signal else (info.exit_code or 1)
    if word == "TIMEOUT":
        return Outcome(exit_code=EXIT_TIMEOUT, timed_out=True, reason=reason, details=details)
    return Outcome(exit_code=code, reason=reason, failed_node=failed_node_of(batch_log),
                   oom_killed=word == "OUT_OF_MEMORY", details=details)


class SlurmExecutor(Executor):
    """Submits the plan as one batch job on a Slurm cluster and follows it."""

    name: ClassVar[str] = "slurm"
    multi_node: ClassVar[bool] = True
    run_options_help: ClassVar[str] = (
        "submit the run as one batch job (job.sbatch in the run folder), one torchrun per node, and follow it; the "
        "nodes must share the results folder at the same path; Ctrl-C cancels the job")
    run_options: ClassVar[tuple[ExecutorOption, ...]] = (
        ExecutorOption("partition", "the Slurm partition (default: the cluster's default)", partition_word,
                       flag="--partition", metavar="P"),
        ExecutorOption("gres", "generic resources per node as the cluster names them, e.g. gpu:8 or npu:8", gres_word,
                       flag="--gres", metavar="GRES"),
        ExecutorOption("container", "how each node runs the worker: none (the node's own Python, default), pyxis (srun "
                       "--container-image=the recipe's image), docker (docker run of the recipe's image per node)",
                       flag="--slurm-container", choices=CONTAINER_MODES),
        ExecutorOption("image", "the recipe's image, for --slurm-container pyxis or docker", image_reference),
    )

    def __init__(self, partition: str | None = None, container: str = "none", gres: str | None = None,
                 image: str | None = None) -> None:
        # Every option is checked here, where the executor is built: a fresh command line, a
        # --resume (options recorded in plan.json) and a bundle's re-derived plan alike.
        super().__init__(partition=partition, container=container, gres=gres, image=image)
        if container != "none" and not image:
            raise BadInput(f"--slurm-container {container}: the recipe names no image to run")
        self.partition, self.container, self.gres, self.image = partition, container, gres, image
        self._job_id: str | None = None
        self._script: Path | None = None
        self._run_dir: Path | None = None
        self._follower: LogFollower | None = None
        self._final: JobInfo | None = None

    def options(self) -> dict[str, str]:
        return {key: value for key, value in super().options().items() if (key, value) != ("container", "none")}

    @classmethod
    def options_for(cls, given: dict[str, str], loaded) -> dict[str, str]:
        """The container modes run the recipe's image."""
        if given.get("container", "none") == "none":
            return given
        if not loaded.recipe.image:
            raise BadInput(f"{loaded.path}: image: --slurm-container {given['container']} needs an image; "
                           "the recipe names none")
        return {**given, "image": loaded.recipe.image}

    def worker_in_container(self) -> bool:
        return self.container != "none"

    # -- pre-flight -------------------------------------------------------------------------------

    def arrange(self, plan):
        """The plan with every node's torchrun under Slurm's rendezvous (node rank $SLURM_NODEID,
        master from scontrol): pure, so `harness plan --executor slurm` shows what plan.json records."""
        launch = self._node_launch(plan)
        slurm_plan = replace(plan, launch=LaunchSpec(argv=launch.argv, environment=launch.environment,
                                                     world_size=plan.launch.world_size))
        if plan.nodes > 1:
            slurm_plan = replace(slurm_plan, node_launches=node_launches(self._python_plan(plan),
                                                                         scheduler_rendezvous("slurm", plan.master_port)))
        return slurm_plan

    def prepare(self, plan):
        """The cluster answers and the partition exists and is big enough."""
        require_slurm()
        self._check_partition(plan.nodes)
        return self.arrange(plan)

    def _check_partition(self, nodes: int) -> None:
        argv = ["sinfo", "-h", "-o", "%P %D"] + (["-p", self.partition] if self.partition else [])
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvironmentNotReady(f"sinfo does not answer ({exc}): is slurmctld up?") from None
        if done.returncode != 0:
            raise EnvironmentNotReady(f"sinfo: {' '.join(done.stderr.split()) or f'exit code {done.returncode}'}")
        sizes: dict[str, int] = {}
        for line in done.stdout.splitlines():
            name, _, count = line.partition(" ")
            sizes[name.rstrip("*")] = sizes.get(name.rstrip("*"), 0) + int(count or 0)
        if not sizes:
            raise BadInput(f"--partition {self.partition}: no such Slurm partition" if self.partition
                           else "the Slurm cluster has no partition")
        wanted = self.partition or next(name for name in sizes)
        if sizes.get(wanted, 0) < nodes:
            raise BadInput(f"device.nodes: {nodes} nodes wanted, partition {wanted} has {sizes.get(wanted, 0)}")

    def _python_plan(self, plan):
        # In a container the image's interpreter runs the worker, not this host's.
        return replace(plan, python="python") if self.container != "none" else plan

    def _node_launch(self, plan) -> NodeLaunch:
        """Node 0's launch, the same on every node ($SLURM_NODEID, $MASTER_ADDR expand there)."""
        if plan.nodes == 1 and plan.world_size == 1:
            argv = plan.launch.argv if self.container == "none" else ("python", *plan.launch.argv[1:])
            return NodeLaunch(0, tuple(argv), dict(plan.launch.environment))
        return node_launches(self._python_plan(plan), scheduler_rendezvous("slurm", plan.master_port))[0]

    # -- the job --------------------------------------------------------------------------------

    def job_spec(self, plan, run) -> SlurmJobSpec:
        run_dir = Path(run.path).resolve()
        launch = self._node_launch(plan)
        environment = {
            **launch.environment, "PYTHONUNBUFFERED": "1",
            # The lifeline: the run folder is shared, so every node's workers can watch the lock.
            ENV_RUN_LOCK: str(Path(run.lock_file).resolve()), ENV_TRAINER_LOCK: str(Path(run.trainer_lock_file).resolve()),
        }
        return SlurmJobSpec(
            job_name=f"pspnet-{run.run_id}", run_dir=str(run_dir), nodes=plan.nodes,
            launch=replace(launch, environment=environment), partition=self.partition, gres=self.gres,
            container=self.container, image=self.image, container_mounts=self._mounts(plan, run_dir),
            container_workdir=str(run_dir) if self.container != "none" else None,
        )

    def _mounts(self, plan, run_dir: Path) -> tuple[tuple[str, str, bool], ...]:
        """Same paths inside as outside: the plan's local layout holds in the container too."""
        if self.container == "none":
            return ()
        mounts = [(str(PurePosixPath(plan.job.data_root).parent),) * 2 + (True,), (str(run_dir), str(run_dir), False)]
        for path in (plan.job.pretrained, plan.job.checkpoint):
            if path and "://" not in path and not path.startswith(str(run_dir)):
                mounts.append((path, path, True))
        return tuple(mounts)

    def start(self, plan, run, on_line: LineSink) -> None:
        require_slurm()
        spec = self.job_spec(plan, run)
        run_dir = Path(spec.run_dir)
        run.write_text(SBATCH_FILE, render_sbatch(spec))
        self._script, self._run_dir, self._final = run_dir / SBATCH_FILE, run_dir, None
        self._follower = LogFollower(self._log_sources, Path(run.log_file), on_line, PROGRESS_LOG)
        self._follower.skip_existing()  # an earlier attempt's node logs are in train.log already
        self._job_id = submit(self._script, sbatch_arguments(spec))
        run.set_status("running", slurm_job_id=self._job_id)
        print(f"harness: Slurm job {self._job_id} submitted ({self._script})", file=sys.stderr, flush=True)

    def _log_sources(self) -> list[Path]:
        assert self._run_dir is not None
        own_batch_log = [self._run_dir / f"slurm-{self._job_id}.out"] if self._job_id else []
        return sorted((self._run_dir / NODES_DIR).glob(NODE_LOG.format(node="*"))) + own_batch_log

    def wait(self) -> Outcome:
        assert self._job_id is not None and self._follower is not None, "start() first"
        self._final = follow(self._job_id, self._follower, poll_s=POLL_S)
        return outcome_of(self._final, self._batch_log())

    def _batch_log(self) -> str:
        try:
            return (self._run_dir / f"slurm-{self._job_id}.out").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Cancel the job and wait until Slurm says it has ended (idempotent)."""
        if self._job_id is None or (self._final is not None and run_state_of(self._final.state) is not None):
            return
        try:
            cancel(self._job_id)
            deadline = time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline:
                info = job_info(self._job_id)
                if info is None or run_state_of(info.state) is not None:
                    self._final = info or self._final
                    break
                time.sleep(POLL_S)
        except ControllerUnreachable:
            # Nobody can cancel it now; its workers do (the lifeline) once this harness has gone
            # and the controller is back.
            pass
        if self._follower is not None:
            self._follower.poll(final=True)  # what the nodes printed while stopping belongs in the log

    def describe(self) -> dict[str, Any]:
        return {"slurm": {"job_id": self._job_id, "script": str(self._script) if self._script else None,
                          "partition": self.partition, "gres": self.gres, "container": self.container,
                          "image": self.image}}


register(SlurmExecutor)
