"""Run a recipe: validate -> dataset -> run folder -> plan -> executor -> parse -> result.

All checks that can fail on bad input happen before the run folder exists, so a bad recipe or
dataset never leaves anything in ``results/``. Once the folder exists, nothing is deleted: a failed
or interrupted run keeps its log, work_dir and a status that says what happened.
"""
from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.data.resolve import resolve_dataset
from harness.plan import CONFIGS_DIR, Executor, Plan, PlanInputs, build_plan
from harness.progress import Progress
from harness.provenance import host_provenance
from harness.recipe import LoadedRecipe
from harness.result import build_result
from harness.runs import RunDir, RunStore, utc_now
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
    )


def describe_plan(plan: Plan) -> dict:
    data = plan.to_dict()
    data["config_changes"] = config_changes(plan.job)
    return data


def copy_configs(loaded: LoadedRecipe, run: RunDir) -> None:
    """The recipe's config folder goes into the run, so local ``_base_`` files come along and
    later edits to the checked-in files cannot change what this run trained."""
    source = loaded.config_path.parent
    shutil.copytree(source, run.path / CONFIGS_DIR, ignore=shutil.ignore_patterns("__pycache__"))


def prepare_run(loaded: LoadedRecipe, store: RunStore, executor: Executor) -> tuple[RunDir, Plan]:
    dataset_dir = resolve_dataset(loaded)
    run = store.create(loaded.recipe.name)
    plan = build_plan(loaded.recipe, plan_inputs(loaded, run.path.resolve(), dataset_dir), executor)
    copy_configs(loaded, run)
    run.write_text("recipe.yaml", yaml.safe_dump(loaded.data, sort_keys=False))
    run.write_json("recipe_source.json", {"path": str(loaded.path)})
    run.write_json("plan.json", describe_plan(plan))
    plan.job.write(run.path / "job.json")
    run.set_status("created", executor=executor, recipe=loaded.recipe.name)
    return run, plan


def _execute(plan: Plan, run: RunDir, progress: Progress, timeout_s: float | None):
    if plan.executor == "docker":
        from harness.executors.docker import run_container

        return run_container(plan.container, log_path=run.log_file, on_line=progress.feed, timeout_s=timeout_s)
    from harness.executors.local import run_local

    return run_local(plan.launch, log_path=run.log_file, on_line=progress.feed, cwd=run.path, timeout_s=timeout_s)


def finish(run: RunDir, loaded: LoadedRecipe, plan: Plan, outcome) -> RunOutcome:
    """Parse what the run left, whatever its exit, and record the state."""
    result = build_result(run, loaded.recipe, plan)
    if getattr(outcome, "image_id", None):
        result["provenance"]["image_id"] = outcome.image_id
    run.write_json("result.json", result)
    if outcome.interrupted:
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
    if getattr(outcome, "oom_killed", False) or outcome.exit_code == 137:
        return "killed (out of memory or SIGKILL)"
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


def run_recipe(loaded: LoadedRecipe, *, results_dir: Path, executor: Executor, quiet: bool = False) -> RunOutcome:
    store = RunStore(results_dir)
    run, plan = prepare_run(loaded, store, executor)
    progress = Progress(quiet=quiet)
    print(f"harness: run {run.run_id} ({plan.executor}, {plan.backend} x{plan.world_size}) -> {run.path}", file=sys.stderr)
    run.write_json("provenance.json", host_provenance())
    run.set_status("running", started=utc_now(), command=list(plan.launch.argv))
    timeout_s = loaded.recipe.timeout_minutes * 60 if loaded.recipe.timeout_minutes else None

    class _Interrupted:
        interrupted = True
        exit_code = EXIT_INTERRUPTED

    try:
        outcome = _execute(plan, run, progress, timeout_s)
    except KeyboardInterrupt:
        outcome = _Interrupted()
    finally:
        progress.close()
    return finish(run, loaded, plan, outcome)
