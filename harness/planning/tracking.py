"""The recipe's ``tracking`` section -> the job's tracking settings -> mmengine vis backends.

The host resolves the settings once (``job_tracking``, recorded in job.json and shown by ``harness
plan``); the worker only turns them into ``visualizer.vis_backends`` entries (``vis_backends``),
after mmseg's ``LocalVisBackend``, which keeps writing vis_data/scalars.json for the harness's own
parsing.
"""
from __future__ import annotations

import importlib.util
from pathlib import PurePosixPath
from typing import Any

from harness.core.errors import EnvironmentNotReady, BadInput

EXTRA_HINT = "pip install 'pspnet-repro[tracking]'"
RUN_ID_TAG = "harness.run_id"  # the tag by which `harness export mlflow` finds a run's MLflow run
RECIPE_TAG = "harness.planning.recipe"
ARTIFACTS_FOLDER = "mlartifacts"  # next to a SQLite store's file, as `mlflow server` names it

# What each backend imports in the worker: mmengine's TensorboardVisBackend uses
# torch.utils.tensorboard, which needs the tensorboard package; a SQLite store needs SQLAlchemy and
# alembic, which mlflow-skinny leaves out.
BACKEND_MODULES = {"tensorboard": ("tensorboard",), "mlflow": ("mlflow",)}
STORE_MODULES = {"sqlite": ("sqlalchemy", "alembic")}
# mlflow: mmengine's MLflowVisBackend, whose failures stop the stream rather than the training
VIS_BACKEND_TYPES = {"tensorboard": "TensorboardVisBackend", "mlflow": "GuardedMLflowVisBackend"}
HARNESS_VIS_BACKENDS_MODULE = "harness.worker.vis_backends"  # registers GuardedMLflowVisBackend


def uri_scheme(uri: str) -> str:
    return uri.partition(":")[0].lower()


def local_store_path(uri: str) -> PurePosixPath | None:
    """The file or folder of a store on this machine (``sqlite:////a/b.db``, ``file:///a``)."""
    scheme = uri_scheme(uri)
    if scheme == "sqlite":
        return PurePosixPath(uri.removeprefix("sqlite:///"))
    if scheme == "file":
        return PurePosixPath(uri.removeprefix("file://"))
    return None


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a SQLite store's file (MLflow's own default is
    ./mlruns under whatever folder the process runs in); a server or file store decides itself."""
    if uri_scheme(uri) != "sqlite":
        return None
    return str(local_store_path(uri).parent / ARTIFACTS_FOLDER)


def missing_modules(backends: list[str], mlflow_uri: str | None) -> list[str]:
    wanted = [module for backend in backends for module in BACKEND_MODULES[backend]]
    if "mlflow" in backends and mlflow_uri:
        wanted += STORE_MODULES.get(uri_scheme(mlflow_uri), ())
    return [module for module in wanted if importlib.util.find_spec(module) is None]


def require_installed(backends: list[str], mlflow_uri: str | None, where: str) -> None:
    """EnvironmentNotReady (exit 3) naming the extra when this Python lacks a backend's package."""
    missing = missing_modules(backends, mlflow_uri)
    if missing:
        raise EnvironmentNotReady(
            f"{where}: tracking.backends {backends} needs the Python package(s) {', '.join(missing)}, not installed "
            f"here: {EXTRA_HINT} (the `tracking` extra)"
        )


def check_tracking(recipe, where: str, *, worker_here: bool, in_container: bool) -> None:
    """Before anything is written: the packages where the worker runs in this Python (exit 3), and
    a store a container can reach (exit 2). An image carries the extra itself."""
    tracking = recipe.tracking
    if tracking is None:
        return
    if worker_here:
        require_installed(list(tracking.backends), tracking.mlflow_uri, where)
    if in_container and tracking.mlflow_uri and local_store_path(tracking.mlflow_uri) is not None:
        raise BadInput(
            f"{where}: tracking.mlflow_uri {tracking.mlflow_uri!r}: a container cannot reach a store on the host's "
            "disk; give a tracking server (http://HOST:PORT), or run with --executor local"
        )


def job_tracking(recipe, run_id: str) -> dict[str, Any] | None:
    """The job's tracking settings (None without a ``tracking`` section)."""
    tracking = recipe.tracking
    if tracking is None:
        return None
    return {
        "backends": list(tracking.backends),
        "mlflow_uri": tracking.mlflow_uri,
        "experiment": tracking.experiment or recipe.name,
        "run_id": run_id,
        "recipe": recipe.name,
    }


def vis_backends(tracking: dict[str, Any]) -> list[dict[str, Any]]:
    """mmengine vis backend configs for the job's tracking settings."""
    configs = []
    for backend in tracking["backends"]:
        config: dict[str, Any] = {"type": VIS_BACKEND_TYPES[backend]}
        if backend == "mlflow":
            uri = tracking["mlflow_uri"]
            config.update(
                tracking_uri=uri,
                exp_name=tracking["experiment"],
                run_name=tracking["run_id"],
                tags={RUN_ID_TAG: tracking["run_id"], RECIPE_TAG: tracking["recipe"]},
                artifact_location=artifact_location(uri),
            )
        configs.append(config)
    return configs
