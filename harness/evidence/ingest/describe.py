"""Describing a found run for ``harness ingest``: parse its logs and say, as a recipe, what they
show was run (mode, device kind and count, batch, iterations) and which shipped reference row it is
judged against. Writes nothing."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from harness.core.errors import first_problem
from harness.data.manifest import sha256_file
from harness.evidence.ingest.discover import Source, discover, read_head
from harness.evidence.ingest.errors import IngestError
from harness.planning.recipe import Recipe, BadInput, load_recipe_data
from harness.planning.shipped import RECIPES_DIR
from harness.results.logs import LogParseError, LogResult, parse_logs

SEED_CONFIG = "configs/pspnet_r50-d8_voc12aug-512x512_npu-seed.py"
GPU_CONFIG = "configs/pspnet_r50-d8_voc12aug-512x512_gpu.py"
_DEVICE_SNIFF_BYTES = 1 << 16


@dataclass
class Prepared:
    """A parsed source and the recipe it will be stored with."""

    source: Source
    parsed: LogResult
    recipe_data: dict
    recipe: Recipe
    sha256: dict[str, str]


def _shipped_reference(name: str) -> dict | None:
    try:
        data = load_recipe_data(RECIPES_DIR / f"{name}.yaml")
    except BadInput:
        return None
    reference = data.get("reference")
    return dict(reference) if isinstance(reference, dict) else None


def _mmseg_reference(kind: str) -> dict:
    if kind != "cpu":
        try:
            data = load_recipe_data(RECIPES_DIR / "gpu_full_8p.yaml")
        except BadInput:
            data = {}
        for row in data.get("published") or []:
            if isinstance(row, dict) and row.get("label") == "mmsegmentation":
                return {**row, "compare": "best"}
    return {"label": "none", "source": "ingested run: no published row for these conditions",
            "conditions": "no reference numbers; nothing is judged", "compare": "best"}


def _seed_mode(case: str | None, parsed: LogResult) -> str:
    if case:
        for suffix, mode in (("_acc", "accuracy"), ("_perf", "performance"), ("_eval", "eval")):
            if case.endswith(suffix):
                return mode
    return "accuracy" if parsed.evaluations_count else "performance"


def _seed_reference(mode: str, count: int) -> dict:
    if mode == "eval":
        names = ["eval_8p"]
    elif count == 1:
        names = ["full_1p" if mode == "accuracy" else "perf_1p", "full_1p"]
    else:
        names = ["full_8p" if mode == "accuracy" else "perf_8p", "full_8p"]
    for name in names:
        reference = _shipped_reference(name)
        if reference:
            return reference
    return {"label": "none", "source": "the shipped recipes were not found", "compare": "best"}


def _log_text_head(parse_files: list[Path]) -> str:
    return "\n".join(read_head(p, _DEVICE_SNIFF_BYTES) for p in parse_files)


def _mmseg_device_kind(head: str) -> str:
    lower = head.lower()
    if any(mark in lower for mark in ("torch_npu", "+ascend", "'hccl'", "npu available: true", "device='npu'")):
        return "npu"
    if "cuda available: true" in lower or re.search(r"^\s*gpu \d+(,\d+)*:", lower, re.M):
        return "gpu"
    if "cuda available: false" in lower:
        return "cpu"
    return "gpu"  # no environment block: mmseg's usual device


def _interval(values: list[int], default: int) -> int:
    steps = sorted({b - a for a, b in zip(values, values[1:]) if b > a})
    return steps[0] if steps else default


def _recipe_data(source: Source, parsed: LogResult, batch: int, devices: int) -> dict:
    head = _log_text_head(source.parse_files)
    train_iters = [pt.iter for pt in parsed.train]
    eval_iters = [e.iteration for e in parsed.evaluations if e.iteration is not None]
    iterations = parsed.max_iters or parsed.iterations or 1
    train = {
        "batch_per_device": batch,
        "iterations": iterations,
        "log_interval": _interval(train_iters, train_iters[0] if train_iters else 50),
        "val_interval": _interval(eval_iters, eval_iters[0] if eval_iters else iterations),
    }
    if source.kind == "seed":
        case = source.seed_fields.get("CaseName")
        mode = _seed_mode(case, parsed)
        kind = "npu"  # the seed scripts run on Ascend; DeviceType (aarch64 / x86_64) is the host CPU
        train.update(norm="BN", amp=True)
        reference = _seed_reference(mode, devices)
        config = SEED_CONFIG
        what = f"seed scripts' output folder{f' (CaseName {case})' if case else ''}"
    else:
        mode = "accuracy" if parsed.evaluations_count else "performance"
        kind = _mmseg_device_kind(head)
        if kind != "cpu" and "SyncBN" in head:
            train["norm"] = "SyncBN"
        reference = _mmseg_reference(kind)
        config = next((f"work_dir/{attempt}/{rel}" for attempt, files in source.attempts.items()
                       for _, rel in files if rel == "vis_data/config.py"),
                      SEED_CONFIG if kind == "npu" else GPU_CONFIG)
        what = f"mmsegmentation work_dir ({parsed.format})"
    data = {
        "name": source.name,
        "description": f"Ingested from {source.origin}: {what}; not run by the harness",
        "mode": mode,
        "device": {"kind": kind, "count": devices},
        "model": {"config": config},
        "train": train,
        "dataset": {"root": str(source.origin)},
        "reference": reference,
    }
    if mode == "eval":
        data["eval"] = {"checkpoint": "ckpt/latest.pth"}  # what train_val_8p.sh evaluates
    return data


def _prepare_source(source: Source, batch_per_device: int | None, devices: int | None) -> Prepared:
    if not source.parse_files:
        raise IngestError(f"{source.origin}: no log files to read")
    try:
        parsed = parse_logs(source.parse_files, batch_per_device=batch_per_device, devices=devices)
    except LogParseError as exc:
        raise IngestError(str(exc)) from None
    except (ValueError, OSError, UnicodeError) as exc:
        raise IngestError(f"{source.origin}: {exc}") from None
    batch = parsed.batch_per_device
    count = parsed.devices
    if batch is None:
        raise IngestError(f"{source.origin}: the logs do not say the batch per device; pass --batch-size")
    if count is None:
        raise IngestError(f"{source.origin}: the logs do not say over how many devices the run was "
                          "distributed; pass --devices")
    data = _recipe_data(source, parsed, batch, count)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise IngestError(f"{source.origin}: cannot describe the run as a recipe: {first_problem(exc)}") from None
    sha = {}
    for attempt, files in source.attempts.items():
        for src, rel in files:
            try:
                sha[f"{attempt}/{rel}"] = sha256_file(src)
            except OSError as exc:
                raise IngestError(f"{src}: {exc.strerror or exc}") from None
    return Prepared(source=source, parsed=parsed, recipe_data=data, recipe=recipe, sha256=sha)


def prepare(path: Path, *, batch_per_device: int | None = None, devices: int | None = None) -> list[Prepared]:
    """Find and parse every run under ``path``; writes nothing. Raises ``IngestError``."""
    return [_prepare_source(s, batch_per_device, devices) for s in discover(path)]
