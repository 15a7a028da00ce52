"""Run a recipe: validate -> pre-flight -> dataset -> run folder -> plan -> executor -> parse -> result.

All checks that can fail on bad input or an unready machine happen before the run folder exists
(or, on ``--resume``, before anything is recorded), so they never leave anything in ``results/``.
Once the folder exists, nothing is deleted: a failed or interrupted run keeps its log, work_dir
and a status that says what happened. The run's lock is held from creation to the end of the
attempt; executors are driven only through ``harness.executors.base.Executor``.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from harness.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, EXIT_TIMEOUT, BadInput, EnvironmentNotReady
from harness.core.ports import free_port
from harness.core.progress import Progress
from harness.data.resolve import resolve_dataset, verify_dataset
from harness.executors import build_executor, get_executor
from harness.executors.base import Executor, Outcome
from harness.executors.planned import plan_record, planned
from harness.executors.preflight import run_preflight
from harness.planning.backends import npu as npu_backend
from harness.planning.configs import copy_config_files
from harness.planning.plan import CONFIGS_DIR, CONTAINER_USER, CPU_THREADS_VARIABLE, Plan, PlanInputs
from harness.planning.recipe import LoadedRecipe
from harness.planning.stored_recipe import loaded_recipe_of
from harness.results.run_result import build_result
from harness.store.layout import RECIPE_FILE
from harness.store.provenance import host_provenance
from harness.store.records import (DatasetRecord, ImageRecord, JobRecord, ProvenanceRecord, RecipeSourceRecord,
                                    RunStatus)
from harness.store.runs import RunBusy, RunDir, RunLock, RunStore, RunStoreError, check_writable, utc_now

TRAINER_EXIT_WAIT_S = 15  # how long a resume waits for an old trainer to notice its harness died
DISK_FULL_MARKERS = ("No space left on device", "ENOSPC")
DISK_NEARLY_FULL_BYTES = 8 * 1024**2


@dataclass(frozen=True)
class RunOutcome:
    run: RunDir
    state: str
    exit_code: int


def plan_inputs(loaded: LoadedRecipe, run_dir: Path, dataset_dir: Path, *, resume: bool = False,
                sample_load: bool = False) -> PlanInputs:
    """``sample_load``: measure which cores are idle now (``free_cpus``, 0.25 s) for a plan that
    will run now (or be shown as such)."""
    recipe = loaded.recipe
    pretrained = recipe.model.pretrained
    return PlanInputs(
        run_dir=str(run_dir),
        dataset_dir=str(dataset_dir),
        config_name=loaded.config_path.name,
        python=sys.executable,
        pretrained_host_path=str(loaded.resolve(pretrained)) if pretrained and "://" not in pretrained else None,
        checkpoint_host_path=str(loaded.resolve(recipe.eval.checkpoint)) if recipe.eval else None,
        resume=resume,
        container_user=container_user(),
        rank_table_host_path=str(loaded.resolve(recipe.device.rank_table)) if recipe.device.rank_table else None,
        optional_host_paths=npu_backend.present_optional_paths() if recipe.device.kind == "npu" else (),
        cpu_threads=cpu_threads_setting(),
        # Probed here, not in planning: two multi-rank runs on one host must not share a port.
        master_port=free_port() if recipe.device.world_size > 1 and recipe.device.master_port is None else None,
        user_thread_settings=user_thread_settings(os.environ),
        free_cpus=free_cpus() if sample_load and _threads_are_ours(recipe) else None,
    )


def _say_threads_chosen(plan: Plan, inputs: PlanInputs) -> None:
    threads = plan.launch.environment.get("OMP_NUM_THREADS")
    if inputs.free_cpus and threads == str(inputs.free_cpus) and not inputs.cpu_threads:
        print(f"harness: only {inputs.free_cpus} of {os.cpu_count()} cores were idle at the start: "
              f"{threads} torch thread(s) (PSPNET_CPU_THREADS=N chooses)", file=sys.stderr)


def _threads_are_ours(recipe) -> bool:
    """A single CPU rank whose caller chose no thread settings (then the harness chooses)."""
    return recipe.device.kind == "cpu" and recipe.device.world_size == 1 and not user_thread_settings(os.environ)


PROC_STAT = Path("/proc/stat")
LOAD_SAMPLE_S = 0.25


def free_cpus(sample_s: float = LOAD_SAMPLE_S) -> int | None:
    """How many of this host's cores were idle over ``sample_s`` at the start of a run, when
    fewer than all (at least 1); None when all were idle or /proc/stat cannot be read."""
    try:
        before = PROC_STAT.read_text().splitlines()[0]
        time.sleep(sample_s)
        after = PROC_STAT.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return free_cpus_between(before, after, usable=os.cpu_count() or 1)


def free_cpus_between(before: str, after: str, usable: int) -> int | None:
    """The idle cores between two reads of /proc/stat's first line (``cpu user nice system idle
    iowait ...`` in jiffies, summed over ``usable`` cores)."""
    try:
        first, second = ([int(v) for v in line.split()[1:]] for line in (before, after))
    except ValueError:
        return None
    if len(first) < 5 or len(second) < 5 or sum(second) <= sum(first):
        return None
    idle = (second[3] + second[4]) - (first[3] + first[4])
    free = round(usable * idle / (sum(second) - sum(first)))
    return None if free >= usable else max(1, free)


def user_thread_settings(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The thread variables the caller set (non-empty), sorted: with any of them, CPU ranks get
    the caller's choice and not the harness's default (backends.cpu.THREAD_DEFAULTS)."""
    return tuple(sorted(name for name, value in environ.items()
                        if value.strip() and (name == CPU_THREADS_VARIABLE or name.startswith(("OMP_", "GOMP_")))))


def cpu_threads_setting() -> int | None:
    """PSPNET_CPU_THREADS: torch threads per CPU rank, for hosts that run several trainings at
    once (scripts/test.sh sets 1); unset or empty: torch's default."""
    text = os.environ.get(CPU_THREADS_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1 or int(text) > 1024:
        raise BadInput(f"{CPU_THREADS_VARIABLE}={text}: expected a whole number of threads from 1 to 1024")
    return int(text)


def container_user() -> str:
    uid, gid = os.getuid(), os.getgid()
    return CONTAINER_USER if uid == 0 else f"{uid}:{gid}"


def hand_over_run_dir(run: RunDir, plan: Plan) -> None:
    """A root host starts CPU/GPU containers as uid 1000, which must be able to write the run."""
    user = plan.container.user if plan.container else None
    if user is None or os.getuid() != 0:
        return
    uid, gid = (int(part) for part in user.split(":"))
    for path in [run.path, *run.path.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def copy_configs(loaded: LoadedRecipe, run: RunDir) -> None:
    """The config and the local files it inherits go into the run, so later edits to the
    checked-in files cannot change what this run trained (harness.planning.configs says which files)."""
    copy_config_files(loaded.config_path, loaded.path.parent, run.path / CONFIGS_DIR)


def dataset_folder(loaded: LoadedRecipe) -> Path:
    """The recipe's VOCdevkit; a synthetic set is made in the cache first. A cache that cannot be
    written (read-only, full, not a folder) is an environment problem: one line, exit 3."""
    try:
        return resolve_dataset(loaded)
    except OSError as exc:
        where = exc.filename or os.environ.get("PSPNET_CACHE") or "the dataset cache"
        raise EnvironmentNotReady(
            f"{where}: cannot write the dataset cache ({exc.strerror or exc}); set PSPNET_CACHE to a writable folder"
        ) from None


def prepare_run(loaded: LoadedRecipe, store: RunStore, executor: Executor, *,
                skip_data_check: bool = False) -> tuple[RunDir, RunLock, Plan]:
    dataset_dir = dataset_folder(loaded)
    dataset = verify_dataset(dataset_dir, f"{loaded.path}: dataset", skip_check=skip_data_check)
    # Pre-flight with the dataset folder standing in for the run folder (both are plain folders
    # to bind): a machine that cannot run this leaves nothing behind.
    executor.prepare(planned(loaded, plan_inputs(loaded, dataset_dir, dataset_dir), executor))
    run = store.create(loaded.recipe.name)
    lock = run.lock()
    run.set_status("created", executor=executor.name, recipe=loaded.recipe.name)
    run.write(DatasetRecord.model_validate(dataset))
    inputs = plan_inputs(loaded, run.path.resolve(), dataset_dir, sample_load=True)
    plan = executor.prepare(planned(loaded, inputs, executor))
    _say_threads_chosen(plan, inputs)
    copy_configs(loaded, run)
    run.write_text(RECIPE_FILE, yaml.safe_dump(loaded.data, sort_keys=False))
    run.write(RecipeSourceRecord(path=str(loaded.path)))
    run.write(plan_record(plan))
    run.write(JobRecord.from_job(plan.job))
    return run, lock, plan


class RunTimeout(KeyboardInterrupt):
    """Raised in the main thread by SIGALRM when a run exceeds its recipe's timeout; a
    KeyboardInterrupt so that the executor is stopped as on Ctrl-C."""


# One interrupt is enough: the first Ctrl-C / SIGTERM / timeout starts the shutdown; later ones
# (an impatient user pressing Ctrl-C again) are ignored so that stopping the ranks, parsing the
# logs and writing the status always complete.
_interrupt_raised = False


def _interrupt_once(signum, frame):
    global _interrupt_raised
    if _interrupt_raised:
        print("harness: already stopping; the run is being recorded", file=sys.stderr)
        return
    _interrupt_raised = True
    raise KeyboardInterrupt()


def _timeout_once(signum, frame):
    global _interrupt_raised
    if _interrupt_raised:
        return
    _interrupt_raised = True
    raise RunTimeout()


def install_interrupt_handlers() -> None:
    """SIGINT and SIGTERM (docker stop, a batch scheduler) both mean: stop, keep, mark interrupted.
    SIGINT explicitly too: a process started in the background inherits SIGINT ignored. SIGHUP
    (terminal closed) as well: the run is recorded rather than left stale."""
    global _interrupt_raised
    _interrupt_raised = False
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt_once)


def interrupt_handlers_installed() -> bool:
    return signal.getsignal(signal.SIGINT) is _interrupt_once


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}"


def execute_with_limits(executor: Executor, plan: Plan, run: RunDir, progress: Progress, timeout_s: float | None) -> Outcome:
    """Run the executor; Ctrl-C/SIGTERM and the timeout become outcomes, never lost runs."""
    global _interrupt_raised
    _interrupt_raised = False  # an interrupt before this point has already been raised
    previous = signal.signal(signal.SIGALRM, _timeout_once) if timeout_s else None
    if timeout_s:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    outcome: Outcome | None = None
    try:
        try:
            executor.start(plan, run, progress.feed)
            outcome = executor.wait()
        finally:
            _interrupt_raised = True  # from here on, further interrupts are ignored
            if timeout_s:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except RunTimeout:
        outcome = Outcome(exit_code=EXIT_TIMEOUT, timed_out=True)
    except KeyboardInterrupt:
        outcome = Outcome(exit_code=EXIT_INTERRUPTED, interrupted=True)
    except Exception as exc:  # the engine went away, a disk filled: the run is failed, not lost
        disk_full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        outcome = Outcome(exit_code=-1, error=_one_line(exc), details={"disk_full": disk_full})
    finally:
        if outcome is None or outcome.interrupted or outcome.timed_out or outcome.error:
            try:
                executor.stop()
            except Exception as exc:  # stopping failed too (the engine is gone): the run is still recorded
                if outcome is not None:
                    outcome = replace(outcome, error=outcome.error or _one_line(exc))
        if timeout_s:
            signal.signal(signal.SIGALRM, previous)
        progress.close()
    return outcome


def _disk_full(run: RunDir, outcome: Outcome, log_tail: list[str]) -> bool:
    """ENOSPC seen by the executor or in the log, or a failed run on a file system left with
    (almost) no space: torch.save reports a full disk only as 'unexpected pos'."""
    if outcome.details.get("disk_full") or any(m in line for line in log_tail for m in DISK_FULL_MARKERS):
        return True
    if outcome.exit_code == 0 or outcome.interrupted:
        return False
    try:
        return shutil.disk_usage(run.path).free < DISK_NEARLY_FULL_BYTES
    except OSError:
        return False


def finish(run: RunDir, loaded: LoadedRecipe, plan: Plan, outcome: Outcome) -> RunOutcome:
    """Parse what the run left, whatever its exit, and record the state. On a full disk the
    (small, atomic) status is written first, so the run never stays 'running'."""
    details = {"exit_code": outcome.exit_code, "finished": utc_now()}
    if outcome.interrupted and not outcome.timed_out:
        state, code = "interrupted", EXIT_INTERRUPTED
        if outcome.reason:  # e.g. the scheduler cancelled or preempted the job
            details["reason"] = outcome.reason
    elif outcome.exit_code == 0:
        state, code = "succeeded", EXIT_OK
    else:
        state, code = "failed", EXIT_RUN_FAILED
    last_lines = tail(run.log_file, 60)
    if _disk_full(run, outcome, last_lines):
        state, code = "failed", EXIT_RUN_FAILED
        _record_status(run, state, reason="disk full", last_lines=last_lines[-20:], **details)
    result_error = None
    try:
        result = build_result(run, loaded.recipe, plan.world_size, image_id=outcome.image_id)
        run.write(result)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            state, code = "failed", EXIT_RUN_FAILED
            _record_status(run, state, reason="disk full", last_lines=last_lines[-20:], **details)
            return RunOutcome(run=run, state=state, exit_code=code)
        result_error = _one_line(exc)
    if state == "failed":
        if _disk_full(run, outcome, last_lines):
            details["reason"] = "disk full"
        elif outcome.timed_out:
            details["reason"] = "timeout"
        else:
            details["reason"] = failure_reason(outcome, last_lines)
        details["last_lines"] = last_lines[-20:]
    elif result_error:
        details["reason"] = f"result not written: {result_error}"
    _record_status(run, state, **details)
    _draw_plots(run)
    return RunOutcome(run=run, state=state, exit_code=code)


def _draw_plots(run: RunDir) -> None:
    """The command that records a run draws its plots (the report never does); a run is
    recorded whether or not they could be drawn."""
    from harness.report.plotting import draw_runs_quietly

    problem = draw_runs_quietly([run])
    if problem:
        print(f"harness: run {run.run_id}: {problem}", file=sys.stderr)


def _record_status(run: RunDir, state: str, **details) -> None:
    """set_status, and on a disk too full even for the small temp file, overwrite in place."""
    try:
        run.set_status(state, **details)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        from harness.store.records import dump_record

        current = run.status().model_dump()
        current.update(details, state=state, updated=utc_now())
        with open(run.record_path(RunStatus), "r+") as handle:  # reuses the file's own blocks
            text = dump_record(RunStatus.model_validate(current))
            handle.seek(0)
            handle.write(text)
            handle.truncate()


def failure_reason(outcome: Outcome, log_tail: list[str]) -> str:
    if outcome.error:
        return f"executor error: {outcome.error}"
    if outcome.failed_node:
        # The Docker executor names its nodes node0, node1...; Slurm by the cluster's node names.
        node = outcome.failed_node if re.fullmatch(r"node\d+", outcome.failed_node) else f"node {outcome.failed_node}"
        return f"{node} failed (exit code {outcome.exit_code})"
    if outcome.reason:
        return outcome.reason
    if outcome.oom_killed:
        return "killed: out of memory (the container's OOM killer)"
    if outcome.exit_code in (137, -9):
        return "killed (SIGKILL: out of memory or killed by someone)"
    if outcome.exit_code < 0 or outcome.exit_code > 128:
        number = -outcome.exit_code if outcome.exit_code < 0 else outcome.exit_code - 128
        return f"killed by signal {number}"
    text = "\n".join(log_tail)
    if "out of memory" in text.lower():
        return "out of memory"
    if "Traceback" in text:
        return "training error (see last_lines)"
    return f"exit code {outcome.exit_code}"


def tail(path: Path, lines: int) -> list[str]:
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        return handle.read().decode("utf-8", "replace").splitlines()[-lines:]


def start_run(run: RunDir, lock: RunLock, loaded: LoadedRecipe, plan: Plan, executor: Executor, *, quiet: bool) -> RunOutcome:
    """One attempt, under the run's lock (released when the attempt is recorded)."""
    with lock:
        progress = Progress(quiet=quiet)
        print(f"harness: run {run.run_id} ({plan.executor}, {plan.backend} x{plan.world_size}) -> {run.path}", file=sys.stderr)
        provenance = ProvenanceRecord.model_validate(host_provenance())
        image = executor.describe().get("image")
        if image:
            provenance.image = ImageRecord.model_validate(image)
        run.write(provenance)
        previous = run.read(RunStatus)
        attempts = (previous.attempts if previous else 0) + 1
        run.set_status("running", started=utc_now(), attempts=attempts, command=list(plan.launch.argv), pid=os.getpid(),
                       host=socket.gethostname(), executor=plan.executor, exit_code=None, reason=None, finished=None,
                       last_lines=[])
        hand_over_run_dir(run, plan)
        timeout_s = loaded.recipe.timeout_minutes * 60 if loaded.recipe.timeout_minutes else None
        outcome = execute_with_limits(executor, plan, run, progress, timeout_s)
        return finish(run, loaded, plan, outcome)


def run_recipe(
    loaded: LoadedRecipe, *, results_dir: Path, executor: str, quiet: bool = False, skip_data_check: bool = False,
    executor_options: dict[str, str] | None = None, on_created: Callable[[RunDir], None] | None = None,
) -> RunOutcome:
    """``on_created``: told the run as soon as its folder exists (a group records it there, so a
    killed harness leaves the group naming the run it was in)."""
    check_writable(results_dir)
    run_preflight(loaded.recipe, results_dir)
    chosen = get_executor(executor)(**(executor_options or {}))
    store = RunStore(results_dir)
    run, lock, plan = prepare_run(loaded, store, chosen, skip_data_check=skip_data_check)
    if on_created is not None:
        on_created(run)
    return start_run(run, lock, loaded, plan, chosen, quiet=quiet)


def _wait_for_old_trainer(run: RunDir) -> None:
    deadline = time.monotonic() + TRAINER_EXIT_WAIT_S
    while run.trainer_alive():
        if time.monotonic() > deadline:
            raise RunBusy(f"run {run.run_id}: a trainer of an earlier attempt is still alive (it holds "
                          f"{run.trainer_lock_file}); stop it before resuming")
        time.sleep(0.5)


def resume_run(run_id: str, *, results_dir: Path, quiet: bool = False, force: bool = False) -> RunOutcome:
    """Continue a run in its own folder from its last checkpoint (mmengine resume). Everything
    that can refuse (lock, damaged records, engine, dataset) is checked before anything is
    recorded, exactly as for a first run."""
    store = RunStore(results_dir)
    run = store.get(run_id)
    check_writable(results_dir)
    lock = run.lock()  # RunBusy (exit 3) while another harness runs it
    try:
        problem = run.damage()
        if problem:
            raise RunStoreError(f"run {run_id} cannot be resumed: {problem}")
        status = run.status()
        loaded = loaded_recipe_of(run)  # an edited recipe.yaml that no longer validates: exit 2
        if status.state == "succeeded" and not force:
            raise RunStoreError(f"run {run_id} already succeeded; pass --force to train it again from its last checkpoint")
        if status.ingested:
            raise RunStoreError(f"run {run_id} was ingested from logs; there is nothing to resume")
        recorded_plan, recorded_job = run.plan(), run.job()
        _wait_for_old_trainer(run)
        run_preflight(loaded.recipe, results_dir)
        executor = build_executor(recorded_plan.executor, recorded_plan.executor_options, str(run.plan_file))
        dataset_dir = dataset_folder(loaded)
        recorded = run.dataset()
        dataset = verify_dataset(dataset_dir, f"{loaded.path}: dataset",
                                 skip_check=recorded.check_skipped if recorded else False)
        if recorded and recorded.fingerprint and dataset["fingerprint"] != recorded.fingerprint:
            raise RunStoreError(
                f"run {run_id}: the dataset changed since the run started (fingerprint {recorded.fingerprint[:12]} -> "
                f"{dataset['fingerprint'][:12]}); resuming would mix two datasets in one result"
            )
        inputs = replace(plan_inputs(loaded, run.path.resolve(), dataset_dir, resume=True, sample_load=True),
                         config_name=Path(recorded_job.config).name)
        plan = executor.prepare(planned(loaded, inputs, executor))
        _say_threads_chosen(plan, inputs)
    except BaseException:
        lock.release()
        raise
    run.write(JobRecord.from_job(plan.job))
    run.write(plan_record(plan))
    return start_run(run, lock, loaded, plan, executor, quiet=quiet)
