"""Run a recipe: validate -> dataset -> run folder -> plan -> executor -> parse -> result.

All checks that can fail on bad input happen before the run folder exists, so a bad recipe or
dataset never leaves anything in ``results/``. Once the folder exists, nothing is deleted: a failed
or interrupted run keeps its log, work_dir and a status that says what happened.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from harness.configs import copy_config_files
from harness.data.resolve import resolve_dataset, verify_dataset
from harness.plan import CONFIGS_DIR, CONTAINER_USER, Executor, Plan, PlanInputs, build_plan
from harness.progress import Progress
from harness.provenance import host_provenance
from harness.preflight import run_preflight
from harness.recipe import LoadedRecipe, Recipe
from harness.result import build_result
from harness.runs import RunDir, RunStore, RunStoreError, utc_now
from harness.worker.config import config_changes

# Exit codes of ``harness run`` (documented in --help and the README).
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class RunOutcome:
    run: RunDir
    state: str
    exit_code: int


def plan_inputs(loaded: LoadedRecipe, run_dir: Path, dataset_dir: Path, *, resume: bool = False) -> PlanInputs:
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
    )


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


def describe_plan(plan: Plan) -> dict:
    data = plan.to_dict()
    data["config_changes"] = config_changes(plan.job)
    return data


def copy_configs(loaded: LoadedRecipe, run: RunDir) -> None:
    """The config and the local files it inherits go into the run, so later edits to the
    checked-in files cannot change what this run trained (harness.configs says which files)."""
    copy_config_files(loaded.config_path, loaded.path.parent, run.path / CONFIGS_DIR)


def prepare_run(loaded: LoadedRecipe, store: RunStore, executor: Executor, *, skip_data_check: bool = False) -> tuple[RunDir, Plan]:
    dataset_dir = resolve_dataset(loaded)
    dataset = verify_dataset(dataset_dir, f"{loaded.path}: dataset", skip_check=skip_data_check)
    run = store.create(loaded.recipe.name)
    run.write_json("dataset.json", dataset)
    plan = build_plan(loaded.recipe, plan_inputs(loaded, run.path.resolve(), dataset_dir), executor)
    copy_configs(loaded, run)
    run.write_text("recipe.yaml", yaml.safe_dump(loaded.data, sort_keys=False))
    run.write_json("recipe_source.json", {"path": str(loaded.path)})
    run.write_json("plan.json", describe_plan(plan))
    plan.job.write(run.path / "job.json")
    run.set_status("created", executor=executor, recipe=loaded.recipe.name)
    return run, plan


class RunTimeout(KeyboardInterrupt):
    """Raised in the main thread by SIGALRM when a run exceeds its recipe's timeout; a
    KeyboardInterrupt so that executors stop and remove what they started, as on Ctrl-C."""


@dataclass(frozen=True)
class StopOutcome:
    exit_code: int
    interrupted: bool = False
    timed_out: bool = False
    error: str | None = None


def _execute(plan: Plan, run: RunDir, progress: Progress):
    if plan.executor == "docker":
        from harness.executors.docker import connect, preflight, run_container

        client = connect()
        preflight(plan.container, client)
        return run_container(plan.container, log_path=run.log_file, on_line=progress.feed, client=client)
    from harness.executors.local import run_local

    return run_local(plan.launch, log_path=run.log_file, on_line=progress.feed, cwd=run.path)


def _raise_timeout(signum, frame):
    raise RunTimeout()


def execute_with_limits(plan: Plan, run: RunDir, progress: Progress, timeout_s: float | None):
    """Run the executor; Ctrl-C/SIGTERM and the timeout become outcomes, never lost runs."""
    previous = signal.signal(signal.SIGALRM, _raise_timeout) if timeout_s else None
    if timeout_s:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return _execute(plan, run, progress)
    except RunTimeout:
        return StopOutcome(exit_code=124, timed_out=True)
    except KeyboardInterrupt:
        return StopOutcome(exit_code=EXIT_INTERRUPTED, interrupted=True)
    except Exception as exc:  # the engine went away, a disk filled: the run is failed, not lost
        return StopOutcome(exit_code=-1, error=f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        if timeout_s:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        progress.close()


def finish(run: RunDir, loaded: LoadedRecipe, plan: Plan, outcome) -> RunOutcome:
    """Parse what the run left, whatever its exit, and record the state."""
    result = build_result(run, loaded.recipe, plan)
    if getattr(outcome, "image_id", None):
        result["provenance"]["image_id"] = outcome.image_id
    run.write_json("result.json", result)
    if getattr(outcome, "interrupted", False) and not getattr(outcome, "timed_out", False):
        state, code = "interrupted", EXIT_INTERRUPTED
    elif outcome.exit_code == 0:
        state, code = "succeeded", EXIT_OK
    else:
        state, code = "failed", EXIT_RUN_FAILED
    details = {"exit_code": outcome.exit_code, "finished": utc_now()}
    if state == "failed":
        details["reason"] = "timeout" if getattr(outcome, "timed_out", False) else failure_reason(run, outcome)
        details["last_lines"] = tail(run.log_file, 20)
    run.set_status(state, **details)
    return RunOutcome(run=run, state=state, exit_code=code)


def failure_reason(run: RunDir, outcome) -> str:
    if getattr(outcome, "error", None):
        return f"executor error: {outcome.error}"
    if getattr(outcome, "oom_killed", False):
        return "killed: out of memory (the container's OOM killer)"
    if outcome.exit_code in (137, -9):
        return "killed (SIGKILL: out of memory or killed by someone)"
    if outcome.exit_code < 0 or outcome.exit_code > 128:
        number = -outcome.exit_code if outcome.exit_code < 0 else outcome.exit_code - 128
        return f"killed by signal {number}"
    text = "\n".join(tail(run.log_file, 60))
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


def start_run(run: RunDir, loaded: LoadedRecipe, plan: Plan, *, quiet: bool) -> RunOutcome:
    progress = Progress(quiet=quiet)
    print(f"harness: run {run.run_id} ({plan.executor}, {plan.backend} x{plan.world_size}) -> {run.path}", file=sys.stderr)
    run.write_json("provenance.json", host_provenance())
    attempts = run.status().get("attempts", 0) + 1
    run.set_status("running", started=utc_now(), attempts=attempts, command=list(plan.launch.argv), pid=os.getpid(),
                   host=socket.gethostname())
    hand_over_run_dir(run, plan)
    timeout_s = loaded.recipe.timeout_minutes * 60 if loaded.recipe.timeout_minutes else None
    outcome = execute_with_limits(plan, run, progress, timeout_s)
    return finish(run, loaded, plan, outcome)


def run_recipe(
    loaded: LoadedRecipe, *, results_dir: Path, executor: Executor, quiet: bool = False, skip_data_check: bool = False
) -> RunOutcome:
    run_preflight(loaded.recipe, results_dir)
    if executor == "docker":
        docker_preflight(loaded)
    store = RunStore(results_dir)
    run, plan = prepare_run(loaded, store, executor, skip_data_check=skip_data_check)
    return start_run(run, loaded, plan, quiet=quiet)


def docker_preflight(loaded: LoadedRecipe) -> None:
    """Engine, image, devices and inputs, checked before the run folder exists, so that a machine
    that cannot run the container leaves nothing behind. The run folder itself is not made yet;
    the dataset folder stands in for it (both are plain directories to bind)."""
    from harness.executors.docker import connect, preflight

    dataset_dir = resolve_dataset(loaded)
    plan = build_plan(loaded.recipe, plan_inputs(loaded, dataset_dir, dataset_dir), "docker")
    preflight(plan.container, connect())


def load_run_recipe(run: RunDir) -> LoadedRecipe:
    """The recipe exactly as the run was started (after --set), resolved against its source file."""
    source = run.read_json("recipe_source.json") or {}
    data = yaml.safe_load(run.recipe_file.read_text())
    recipe = Recipe.model_validate(data)
    return LoadedRecipe(path=Path(source.get("path", run.recipe_file)), recipe=recipe, data=data)


def resume_run(run_id: str, *, results_dir: Path, quiet: bool = False, force: bool = False) -> RunOutcome:
    """Continue a run in its own folder from its last checkpoint (mmengine resume)."""
    store = RunStore(results_dir)
    run = store.get(run_id)
    status = run.status()
    state = status.get("state")
    if state == "succeeded" and not force:
        raise RunStoreError(f"run {run_id} already succeeded; pass --force to train it again from its last checkpoint")
    if run.effective_state() == "running":
        raise RunStoreError(f"run {run_id} is running (harness pid {status.get('pid')}); it cannot be resumed twice")
    loaded = load_run_recipe(run)
    run_preflight(loaded.recipe, results_dir)
    dataset_dir = resolve_dataset(loaded)
    recorded = run.read_json("dataset.json") or {}
    dataset = verify_dataset(dataset_dir, f"{loaded.path}: dataset", skip_check=recorded.get("check_skipped", False))
    if recorded.get("fingerprint") and dataset["fingerprint"] != recorded["fingerprint"]:
        raise RunStoreError(
            f"run {run_id}: the dataset changed since the run started (fingerprint {recorded['fingerprint'][:12]} -> "
            f"{dataset['fingerprint'][:12]}); resuming would mix two datasets in one result"
        )
    executor = (run.read_json("plan.json") or {}).get("executor", "local")
    inputs = plan_inputs(loaded, run.path.resolve(), dataset_dir, resume=True)
    plan = build_plan(loaded.recipe, replace(inputs, config_name=Path(run.read_json("job.json")["config"]).name), executor)
    plan.job.write(run.path / "job.json")
    run.write_json("plan.json", describe_plan(plan))
    return start_run(run, loaded, plan, quiet=quiet)

