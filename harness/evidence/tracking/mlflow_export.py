"""``harness export mlflow``: stored runs -> one MLflow run each, again and again without duplicates.

What a harness run becomes in MLflow:
- params: the recipe as run (``recipe.*``), the plan (``plan.*``) and provenance: harness version
  and commit, image tag and ID, host and worker package versions, devices (``provenance.*``);
- metrics: ``final.*`` and ``best.*`` (aAcc, mIoU, mAcc) and ``fps``; the loss curve ``loss`` and the
  per-evaluation ``aAcc``/``mIoU``/``mAcc`` as histories by iteration (the names and steps mmengine's
  MLflowVisBackend streams live, so an exported run and a streamed one line up);
- tags: ``harness.run_id`` (how an export finds the run again), state, device, and one
  ``harness.results.verdict.<metric>`` per verdict;
- the run's bundle (``harness bundle``) as the artifact ``harness/<run-id>.tar.gz``.

Exporting again finds the MLflow run by its ``harness.run_id`` tag (the earliest, when a resumed
run streamed twice), keeps its params (MLflow params are write-once), updates its tags and logs
only the metric steps it does not hold yet.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import BadInput, EnvironmentNotReady
from harness.evidence.bundles.pack import BundleSource, write_bundle
from harness.planning.tracking import EXTRA_HINT, RECIPE_TAG, RUN_ID_TAG, artifact_location
from harness.store.records import PlanRecord, RunResult, RunStatus
from harness.store.runs import RunDir

METRICS = ("aAcc", "mIoU", "mAcc")
MAX_PARAM_CHARS = 500  # the smallest limit MLflow servers have had; longer values are cut with a note
BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch call
METRIC_BATCH = 1000
ARTIFACT_FOLDER = "harness"
# MLflow retries an unreachable server for minutes by default; a command line should say so sooner.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


class ExportError(BadInput):
    """A run that cannot be exported (exit 2)."""


@dataclass
class ExportOutcome:
    run_id: str
    mlflow_run_id: str
    experiment: str
    created: bool
    params_logged: int
    params_kept: int
    metric_points_logged: int
    metric_points_present: int

    def line(self) -> str:
        how = "created" if self.created else "updated"
        kept = f" ({self.params_kept} already there, kept)" if self.params_kept else ""
        present = f" ({self.metric_points_present} already there)" if self.metric_points_present else ""
        return (f"run {self.run_id} -> MLflow run {self.mlflow_run_id} ({how}, experiment {self.experiment!r}): "
                f"{self.params_logged} params{kept}, {self.metric_points_logged} metric points{present}, tags, bundle")


def _mlflow():
    try:
        import mlflow
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise EnvironmentNotReady(f"harness export mlflow needs the mlflow package, not installed here: {EXTRA_HINT} "
                                  "(the `tracking` extra)") from None
    return mlflow, Metric, Param, RunTag, MlflowException


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 13] + "...(cut here)"


def _flatten(node: Any, prefix: str) -> dict[str, str]:
    if isinstance(node, dict) and node:
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}"))
        return out
    return {} if node is None else {prefix: _text(node)}


def _key(name: str) -> str:
    # MLflow keys: alphanumerics, underscores, dashes, periods, spaces, slashes.
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def run_params(run: RunDir) -> dict[str, str]:
    """The params of a harness run: recipe as run, plan, provenance (host, image, worker)."""
    recipe = yaml.safe_load(run.recipe_text()) or {}
    recipe.pop("published", None)  # context rows, not settings of this run
    recipe.pop("description", None)
    params = _flatten(recipe, "recipe")
    plan = run.read(PlanRecord)  # an ingested run (logs made elsewhere) has none
    if plan is not None:
        params.update(_flatten({"executor": plan.executor, "backend": plan.backend, "dist_backend": plan.dist_backend,
                                "world_size": plan.world_size, "device_ids": plan.device_ids}, "plan"))
    provenance = run.provenance()
    if provenance is not None:
        image = provenance.image
        params.update(_flatten({
            "harness_version": provenance.harness_version, "harness_commit": provenance.harness_commit,
            "harness_dirty": provenance.harness_dirty, "python": provenance.python, "platform": provenance.platform,
            "machine": provenance.machine, "packages": provenance.packages,
            "image": {"tag": image.tag, "id": image.image_id} if image else None,
            "ingested_from": provenance.ingested_from,
        }, "provenance"))
    worker = run.worker_env()
    if worker is not None:
        params.update(_flatten({
            "python": worker.python, "packages": worker.packages, "torch_threads": worker.torch_threads,
            "cuda": worker.cuda, "devices": worker.devices, "ascend_versions": worker.ascend_versions, "npu": worker.npu,
        }, "worker"))
    return {_key(key): value for key, value in params.items()}


def run_metrics(result: RunResult) -> dict[str, list[tuple[int, float]]]:
    """metric name -> (step, value) points."""
    points: dict[str, list[tuple[int, float]]] = {}

    def add(name: str, step: int | None, value: float | None) -> None:
        if value is not None and step is not None:
            points.setdefault(name, []).append((step, float(value)))

    for point in result.train:
        add("loss", point.iter, point.loss)
    for evaluation in result.evaluations:
        for metric in METRICS:
            add(metric, evaluation.iteration, getattr(evaluation, metric))
    last = result.iterations or 0
    for which in ("final", "best"):
        metrics = getattr(result, which)
        for metric in METRICS:
            add(f"{which}.{metric}", last, getattr(metrics, metric, None) if metrics else None)
    add("fps", last, result.fps)
    return points


def run_tags(run: RunDir, result: RunResult) -> dict[str, str]:
    tags = {RUN_ID_TAG: run.run_id, RECIPE_TAG: result.recipe, "harness.state": run.effective_state(),
            "harness.mode": result.mode, "harness.device": f"{result.device.kind.upper()}-{result.device.count}p",
            "harness.compared": result.compared, "harness.partial": str(result.partial).lower()}
    for verdict in result.verdicts:
        tags[f"harness.results.verdict.{_key(verdict.metric)}"] = verdict.status
    return tags


def _millis(stamp: str | None) -> int | None:
    if not stamp:
        return None
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


@dataclass
class ExportContent:
    """What an export sends for one run, all read (and the bundle written) before MLflow is touched."""

    status: RunStatus
    result: RunResult
    params: dict[str, str]
    tags: dict[str, str]
    points: dict[str, list[tuple[int, float]]]
    bundle: Path

    @classmethod
    def of(cls, run: RunDir, folder: Path) -> "ExportContent":
        problem = run.damage()
        if problem:
            raise ExportError(f"run {run.run_id} cannot be exported: {problem}")
        result = run.result()
        if result is None:
            raise ExportError(f"run {run.run_id}: no result.json yet (still running, or never parsed); nothing to export")
        bundle = folder / f"{run.run_id}.tar.gz"
        write_bundle(BundleSource(runs=[run]), bundle)
        return cls(run.status(), result, run_params(run), run_tags(run, result), run_metrics(result), bundle)


class MlflowExporter:
    """One tracking store; ``export`` sends one harness run."""

    def __init__(self, tracking_uri: str, experiment: str | None = None):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        mlflow, self.Metric, self.Param, self.RunTag, self.MlflowException = _mlflow()
        # MLflow's INFO lines (creating a SQLite store's tables) would interleave with the harness's own
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        self.uri = tracking_uri
        self.experiment = experiment
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage != "active":
                raise ExportError(f"{self.uri}: experiment {name!r} is deleted; restore it or pass --experiment NAME")
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=artifact_location(self.uri))

    def _find(self, run_id: str):
        """The MLflow run tagged with this harness run (any experiment), the earliest first."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return None
        found = self.client.search_runs(experiments, filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
                                        order_by=["attributes.start_time ASC"], max_results=1)
        return found[0] if found else None

    def export(self, run: RunDir, content: "ExportContent") -> ExportOutcome:
        try:
            return self._send(run, content)
        except self.MlflowException as exc:
            # an unreachable server arrives here too, wrapped by MLflow's REST client
            raise EnvironmentNotReady(f"{self.uri}: the MLflow store failed on run {run.run_id}: {_first_line(exc)}") from None
        except OSError as exc:  # requests' connection errors are OSErrors too
            raise EnvironmentNotReady(f"{self.uri}: cannot reach the MLflow store ({_first_line(exc)})") from None

    def _send(self, run: RunDir, content: "ExportContent") -> ExportOutcome:
        existing = self._find(run.run_id)
        experiment = self.experiment or content.result.recipe
        if existing is None:
            mlflow_run = self.client.create_run(self._experiment_id(experiment), start_time=_millis(content.status.started),
                                                tags={RUN_ID_TAG: run.run_id}, run_name=run.run_id)
        else:
            mlflow_run = existing
            experiment = self.client.get_experiment(existing.info.experiment_id).name
        mlflow_id = mlflow_run.info.run_id
        held = mlflow_run.data.params
        new_params = [self.Param(key, value) for key, value in sorted(content.params.items()) if key not in held]
        for start in range(0, len(new_params), BATCH):
            self.client.log_batch(mlflow_id, params=new_params[start:start + BATCH])
        tags = [self.RunTag(key, value) for key, value in sorted(content.tags.items())]
        for start in range(0, len(tags), BATCH):
            self.client.log_batch(mlflow_id, tags=tags[start:start + BATCH])
        logged, present = self._log_new_points(mlflow_id, content.points)
        self.client.log_artifact(mlflow_id, str(content.bundle), ARTIFACT_FOLDER)
        state = MLFLOW_STATUS.get(run.effective_state())
        if state is not None:
            self.client.set_terminated(mlflow_id, status=state, end_time=_millis(content.status.finished))
        return ExportOutcome(run.run_id, mlflow_id, experiment, existing is None, len(new_params),
                             len(set(content.params) & set(held)), logged, present)

    def _log_new_points(self, mlflow_id: str, points: dict[str, list[tuple[int, float]]]) -> tuple[int, int]:
        now = int(time.time() * 1000)
        new, present = [], 0
        for name, history in sorted(points.items()):
            steps = {metric.step for metric in self.client.get_metric_history(mlflow_id, name)}
            for step, value in history:
                if step in steps:
                    present += 1
                else:
                    steps.add(step)
                    new.append(self.Metric(name, value, now, step))
        for start in range(0, len(new), METRIC_BATCH):
            self.client.log_batch(mlflow_id, metrics=new[start:start + METRIC_BATCH])
        return len(new), present


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def export_runs(runs: list[RunDir], tracking_uri: str, experiment: str | None = None) -> list[ExportOutcome]:
    exporter = MlflowExporter(tracking_uri, experiment)
    with tempfile.TemporaryDirectory(prefix="harness-export-") as folder:
        # Every run is read (and bundled) before MLflow is touched: a run that cannot be exported
        # leaves no half-made MLflow run behind, and no earlier run of the same command sent.
        contents = [ExportContent.of(run, Path(folder)) for run in runs]
        return [exporter.export(run, content) for run, content in zip(runs, contents)]
