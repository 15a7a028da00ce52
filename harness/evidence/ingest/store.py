"""Storing described runs for ``harness ingest``: each becomes a run folder laid out like one the
harness made, skipped when the same files (by sha256) were imported before."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from harness.core.untrusted import copy_file_bounded
from harness.evidence.ingest.describe import Prepared, prepare
from harness.results.run_result import build_result
from harness.store.layout import RECIPE_FILE
from harness.store.records import DamagedRecord, ProvenanceRecord, RecipeSourceRecord
from harness.store.runs import MAX_TEXT_FILE_BYTES, RunDir, RunStore, utc_now


def _fingerprint(sha: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(sha.values()))


def find_existing(store: RunStore, prepared: Prepared) -> RunDir | None:
    """An earlier import of exactly these files (same sha256 set), if any."""
    wanted = _fingerprint(prepared.sha256)
    for run in store.all():
        try:
            provenance = run.provenance()
        except DamagedRecord:
            continue  # a damaged run is listed as such by `harness runs`; it is no earlier import
        if provenance is not None and provenance.ingested_from and provenance.sha256:
            if _fingerprint(provenance.sha256) == wanted:
                return run
    return None


def _ingester() -> dict:
    from harness.store.provenance import _git

    status = _git("status", "--porcelain")
    return {"harness_commit": _git("rev-parse", "HEAD"), "harness_dirty": bool(status) if status is not None else None}


def write(prepared: Prepared, results_dir: Path) -> RunDir:
    """Store one prepared source as a run folder (removed again if writing fails)."""
    source = prepared.source
    run = RunStore(results_dir).create(source.name)
    try:
        run.set_status("created", ingested=True, source=str(source.origin))
        files = []
        for attempt, entries in source.attempts.items():
            for src, rel in entries:
                dest = run.work_dir / attempt / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                copy_file_bounded(src, dest, MAX_TEXT_FILE_BYTES)  # never through a link, bounded
                files.append({"source": str(src), "stored": f"work_dir/{attempt}/{rel}"})
        run.write_text(RECIPE_FILE, yaml.safe_dump(prepared.recipe_data, sort_keys=False))
        run.write(RecipeSourceRecord(path=str(source.origin)))
        run.write(ProvenanceRecord(
            ingested_from=str(source.origin),
            ingested_at=utc_now(),
            kind=source.kind,
            files=files,
            sha256=prepared.sha256,
            seed_result=source.seed_fields or None,
            ingested_by=_ingester(),
        ))
        result = build_result(run, prepared.recipe, prepared.recipe.device.world_size, ingested_from=str(source.origin))
        run.write(result)
        details = {"ingested": True, "source": str(source.origin), "finished": utc_now()}
        if result.parse_error:
            run.set_status("failed", reason=f"ingested logs unreadable: {result.parse_error}", **details)
        elif result.partial:
            it, total = result.iterations, result.max_iters
            why = f"stopped at iteration {it} of {total}" if it is not None and total and it < total else "truncated log"
            run.set_status("failed", reason=f"partial log: {why}", **details)
        else:
            run.set_status("succeeded", **details)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


def ingest(path: Path, results_dir: Path, *, batch_per_device: int | None = None, devices: int | None = None,
           on_message: Callable[[str], None] | None = None) -> list[RunDir]:
    """Import every run under ``path`` into ``results_dir``; returns the runs created.

    Sources imported before (same files, by sha256) are skipped; ``on_message`` gets
    ``"already ingested as <run-id>"`` for each. Raises ``IngestError`` before writing anything.
    """
    prepared = prepare(path, batch_per_device=batch_per_device, devices=devices)
    return store_prepared(prepared, results_dir, on_message=on_message)


def store_prepared(prepared: list[Prepared], results_dir: Path, *,
                   on_message: Callable[[str], None] | None = None) -> list[RunDir]:
    store = RunStore(results_dir)
    created = []
    for item in prepared:
        existing = find_existing(store, item)
        if existing is not None:
            if on_message:
                on_message(f"{item.source.origin}: already ingested as {existing.run_id}")
            continue
        run = write(item, results_dir)
        created.append(run)
        if on_message:
            on_message(summary(run, item))
    return created


def summary(run: RunDir, item: Prepared) -> str:
    """One line saying what an import became."""
    result = run.result()
    state = run.status().state
    best = result.compared_metrics().mIoU if result else None
    fps = result.fps if result else None
    iterations = result.iterations if result else None
    bits = [item.recipe.device.label, f"{iterations or '--'} iterations"]
    if fps is not None:
        bits.append(f"fps {fps:.3f}")
    if best is not None:
        bits.append(f"{result.compared} mIoU {best:.2f}")
    return f"{item.source.origin}: ingested as {run.run_id} ({state}; {', '.join(bits)})"
