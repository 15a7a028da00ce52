"""A run folder's logs -> ``result.json``: the parsed numbers, the verdicts against the recipe's
reference, and where each number came from. Rebuilt from the stored logs at any time."""
from __future__ import annotations

from pathlib import Path

from harness.planning.recipe import Recipe
from harness.results.logs import LogParseError, parse_logs
from harness.results.logs.detect import holds_logs
from harness.results.logs.model import LogResult
from harness.results.verdict import judge_all
from harness.store.records import DamagedRecord, Evaluation, RunResult, TrainPoint
from harness.store.runs import RunDir


# The fields of result.json that LogResult (harness.results.logs.model) computes under the same name.
PARSED_FIELDS = tuple(name for name in RunResult.model_fields
                      if name in LogResult.__dataclass_fields__ and name not in ("batch_per_device", "train", "evaluations"))


def _dataset_provenance(run: RunDir) -> dict:
    try:
        dataset = run.dataset()
    except DamagedRecord:
        return {}
    if dataset is None:
        return {}
    return {"dataset_fingerprint": dataset.fingerprint, "dataset_check": dataset.check,
            "dataset_check_skipped": dataset.check_skipped}


def attempt_folders(run: RunDir) -> list[Path]:
    """The (re)starts of the run: folders under work_dir holding logs the parsers read (a text
    log, 0.x ``.log.json`` or 1.x ``vis_data/scalars.json``, as ingested runs may have only one)."""
    if not run.work_dir.is_dir():
        return []
    return sorted(p for p in run.work_dir.iterdir() if p.is_dir() and holds_logs(p))


def build_result(run: RunDir, recipe: Recipe, world_size: int, **provenance) -> RunResult:
    """Parse the run's logs into a ``RunResult``; ``provenance`` adds fields (image_id, ...)."""
    batch = recipe.train.batch_per_device
    result: dict = {
        "run_id": run.run_id,
        "recipe": recipe.name,
        "mode": recipe.mode,
        "device": {"kind": recipe.device.kind, "count": world_size},
        "batch_per_device": batch,
        "reference": recipe.reference.model_dump(),
        "provenance": {"log_files": [], **_dataset_provenance(run), **provenance},
        "parse_error": None,
    }
    folders = attempt_folders(run)
    parsed = None
    if not folders:
        result["parse_error"] = f"{run.work_dir}: no mmengine log folder (the run stopped before training started)"
    else:
        try:
            parsed = parse_logs(folders, batch_per_device=batch, devices=world_size)
        except LogParseError as exc:
            result["parse_error"] = str(exc)
    compared = recipe.reference.compare
    if parsed is not None:
        data = parsed.to_dict()
        # The parsed numbers under the result's own field names; the batch stays the recipe's.
        result.update({name: data[name] for name in PARSED_FIELDS}, log_format=data["format"],
                      train=[{k: p[k] for k in TrainPoint.model_fields} for p in data["train"]],
                      evaluations=[{k: e[k] for k in Evaluation.model_fields} for e in data["evaluations"]])
        result["provenance"]["log_files"] = data["files"]
    metrics = (result.get(compared) or {}) if parsed is not None else {}
    result["compared"] = compared
    result["verdicts"] = [v.model_dump() for v in judge_all(result.get("fps"), metrics, recipe.reference)]
    return RunResult.model_validate(result)
