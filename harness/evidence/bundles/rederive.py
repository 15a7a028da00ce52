"""Re-deriving a bundled run's plan and job, for ``harness verify``.

A bundle's ``plan.json`` carries an executor and its options, which ``run --resume`` would use
again: a forger who rewrites the checksums could slip a command into them. So the plan is not
taken on trust. From the bundled recipe plus what only the original machine knew (the executor
and its options, the run folder, the dataset folder, the interpreter, the port, the resolved
image, the CPU thread setting), all read from the recorded plan, the plan is built again exactly
as ``harness run`` builds it:

- the executor class is constructed from the recorded options, as a fresh ``--executor X
  --option Y`` command line would: its constructor validates them (an unknown executor, an
  unknown or malformed option is a difference);
- the options it then reports, and every field of the rebuilt plan and job, must equal the
  recorded ones; ``status.json``'s executor must be the plan's.

Fields a newer harness adds (absent from a plan written by an older release) are not
differences; a field the recorded plan has and the rebuilt one lacks, or holds differently, is.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

from harness.core.errors import BadInput
from harness.planning.backends.cpu import THREAD_DEFAULTS
from harness.planning.spec import PlanLayout
from harness.store.records import DamagedRecord, JobRecord, PlanRecord, RunStatus

_SHOWN = 80


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b.0": value}: every leaf of nested dicts and lists, by dotted path."""
    if isinstance(data, dict):
        items = {}
        for key, value in data.items():
            items.update(_flat(value, f"{prefix}{key}."))
        return items or {prefix.rstrip("."): {}}
    if isinstance(data, (list, tuple)):
        items = {}
        for index, value in enumerate(data):
            items.update(_flat(value, f"{prefix}{index}."))
        return items or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): data}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def differences(recorded: dict, derived: dict, where: str) -> list[str]:
    """One line per recorded field the rebuilt record does not give (see the module docstring)."""
    mine, theirs = _flat(derived), _flat(recorded)
    lines = []
    for key in sorted(theirs):
        if key not in mine:
            lines.append(f"{where}: {key}: recorded {_shown(theirs[key])}, not part of the plan rebuilt from the bundled recipe")
        elif mine[key] != theirs[key]:
            lines.append(f"{where}: {key}: recorded {_shown(theirs[key])}, rebuilt from the bundled recipe "
                         f"{_shown(mine[key])}")
    return lines


def _bind_source(container: dict | None, target: str) -> str | None:
    for bind in (container or {}).get("binds") or []:
        if isinstance(bind, dict) and bind.get("container_path") == target:
            return bind.get("host_path")
    return None


def _bind_source_under(container: dict | None, prefix: str) -> str | None:
    for bind in (container or {}).get("binds") or []:
        if isinstance(bind, dict) and str(bind.get("container_path", "")).startswith(prefix):
            return bind.get("host_path")
    return None


def recorded_inputs(plan: PlanRecord, recipe, layout: PlanLayout):
    """The machine facts of the recorded plan, as the ``PlanInputs`` they were planned from."""
    from harness.planning.backends.npu import OPTIONAL_HOST_PATHS
    from harness.planning.plan import (CONTAINER_DATA_DIR, CONTAINER_INPUTS_DIR, CONTAINER_RUN_DIR, CONTAINER_USER,
                                        PlanInputs)
    from harness.planning.ranktable import CONTAINER_RANK_TABLE

    job = plan.job
    container = plan.container
    if not PlanLayout(layout).in_container:
        run_dir = str(PurePosixPath(job.work_dir).parent)
        dataset_dir = str(PurePosixPath(job.data_root).parent)
        pretrained = job.pretrained if recipe.model.pretrained and "://" not in recipe.model.pretrained else None
        checkpoint = job.checkpoint if recipe.eval else None
        rank_table = plan.launch.environment.get("RANK_TABLE_FILE") if recipe.device.rank_table else None
    else:
        run_dir = _bind_source(container, CONTAINER_RUN_DIR) or ""
        dataset_dir = _bind_source(container, CONTAINER_DATA_DIR) or ""
        pretrained = _bind_source_under(container, f"{CONTAINER_INPUTS_DIR}/pretrained/")
        checkpoint = _bind_source_under(container, f"{CONTAINER_INPUTS_DIR}/checkpoint/")
        rank_table = _bind_source(container, CONTAINER_RANK_TABLE) if recipe.device.rank_table else None
    present = tuple(p for p in OPTIONAL_HOST_PATHS if any(
        isinstance(b, dict) and b.get("host_path") == p for b in (container or {}).get("binds") or []))
    threads = _recorded_threads(plan.launch.environment) if recipe.device.kind == "cpu" else {}
    port = plan.master_port if plan.master_port is not None or plan.nodes is None else plan.nodes.master_port
    return PlanInputs(
        run_dir=run_dir,
        dataset_dir=dataset_dir,
        config_name=PurePosixPath(job.config).name,
        python=plan.launch.argv[0] if plan.launch.argv else "python",
        pretrained_host_path=pretrained,
        checkpoint_host_path=checkpoint,
        resume=job.resume,
        container_user=(container or {}).get("user") or CONTAINER_USER,
        rank_table_host_path=rank_table,
        optional_host_paths=present,
        master_port=port,
        **threads,
    )


def _recorded_threads(environment: dict[str, str]) -> dict[str, Any]:
    """How the run chose its CPU threads, read from its plan (never from the verifier's own
    environment): the harness's default (its spin count, and the idle cores a single rank took),
    PSPNET_CPU_THREADS (OMP_NUM_THREADS alone), or the caller's own variables (neither recorded:
    also every plan written before the default existed)."""
    threads = environment.get("OMP_NUM_THREADS", "")
    count = int(threads) if threads.isdigit() else None
    if all(environment.get(name) == value for name, value in THREAD_DEFAULTS.items()):
        return {"free_cpus": count}
    if count is not None:
        return {"cpu_threads": count}
    return {"user_thread_settings": ("the run's own",)}


def check_plan(run, where: str) -> list[str]:
    """The differences between the bundled plan/job/status of ``run`` and the rebuilt ones."""
    from harness.executors.planned import describe_plan, planned
    from harness.executors import get_executor
    from harness.planning.stored_recipe import loaded_recipe_of

    plan_path, job_path = f"{where}/{PlanRecord.FILE}", f"{where}/{JobRecord.FILE}"
    try:
        plan = run.read(PlanRecord)
        job = run.read(JobRecord)
        status = run.read(RunStatus)
        loaded = loaded_recipe_of(run)
    except DamagedRecord as exc:
        return [" ".join(str(exc).replace(str(run.path), where).split())]
    if plan is None:
        # An ingested run (from logs) has no plan; nothing of it can be resumed or re-run.
        return [f"{job_path}: present without a {PlanRecord.FILE}"] if job is not None else []
    lines = []
    if status is not None and status.executor is not None and status.executor != plan.executor:
        lines.append(f"{where}/{RunStatus.FILE}: executor: {status.executor!r}, {PlanRecord.FILE} says {plan.executor!r}")
    try:
        executor = get_executor(plan.executor)(**plan.executor_options)
    except BadInput as exc:
        return [*lines, f"{plan_path}: executor {_shown(plan.executor)} with options {_shown(plan.executor_options)}: "
                        f"refused as a command line would be ({' '.join(str(exc).split())})"]
    except TypeError:
        return [*lines, f"{plan_path}: executor_options: {_shown(sorted(plan.executor_options))} are not options "
                        f"of the {plan.executor} executor"]
    try:
        inputs = recorded_inputs(plan, loaded.recipe, executor.plan_layout)
        rebuilt = planned(loaded, inputs, executor)
    except (BadInput, ValueError) as exc:
        return [*lines, f"{plan_path}: cannot be rebuilt from the bundled recipe ({' '.join(str(exc).split())})"]
    if rebuilt.container is not None and plan.container and plan.container.get("image"):
        # The image as resolved on the machine that ran it (a content tag or id): a machine fact.
        rebuilt = replace(rebuilt, container=replace(rebuilt.container, image=plan.container["image"]))
    derived = PlanRecord.model_validate(describe_plan(rebuilt))
    lines += differences(plan.model_dump(mode="json"), derived.model_dump(mode="json"), plan_path)
    if job is not None:
        lines += differences(job.model_dump(mode="json"), JobRecord.from_job(rebuilt.job).model_dump(mode="json"), job_path)
    return lines
