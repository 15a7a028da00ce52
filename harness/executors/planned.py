"""The plan an executor will run, as ``harness plan`` prints it and ``plan.json`` records it: laid
out for where the executor runs, with its options and the config changes the worker will make.
Used by the run engine and by bundle verification alike."""
from __future__ import annotations

from dataclasses import replace

from harness.executors.base import Executor
from harness.planning.mmseg_config import config_changes
from harness.planning.plan import Plan, PlanInputs, build_plan
from harness.planning.recipe import LoadedRecipe
from harness.planning.tracking import check_tracking
from harness.store.records import PlanRecord


def describe_plan(plan: Plan) -> dict:
    data = plan.to_dict()
    data["config_changes"] = config_changes(plan.job)
    return data


def plan_record(plan: Plan) -> PlanRecord:
    return PlanRecord.model_validate(describe_plan(plan))


def planned(loaded: LoadedRecipe, inputs: PlanInputs, executor: Executor) -> Plan:
    """The plan for ``executor``: laid out for where it runs, named after it."""
    in_container = executor.plan_layout.in_container
    worker_here = not executor.worker_in_container()
    check_tracking(loaded.recipe, str(loaded.path), worker_here=worker_here, in_container=in_container)
    plan = build_plan(loaded.recipe, inputs, executor.plan_layout)
    plan = replace(plan, executor=executor.name, executor_options=executor.options())
    return executor.arrange(plan)  # an executor's own launch layout (Slurm's rendezvous)
