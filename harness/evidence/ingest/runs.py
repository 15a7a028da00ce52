"""Run folders the harness laid out elsewhere: a Kubernetes results PVC (`harness k8s`), another
host's ``results/``. They are copied into this store under their own run ids, whole or not at
all. A run whose pods wrote no ``result.json`` (the pods run torchrun, not the harness) then gets
one built from its stored logs, exactly as a run that ended on this host does."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from harness.core.untrusted import UntrustedInput, check_tree
from harness.evidence.ingest.errors import IngestError
from harness.planning.stored_recipe import recipe_of
from harness.store.records import DamagedRecord, PlanRecord
from harness.store.runs import (CHECKPOINT_SUFFIX, MAX_RECORD_BYTES, MAX_TEXT_FILE_BYTES, RUN_FOLDER_LIMITS,
                                 RUN_ID_PATTERN, RunDir, RunStore)

UNFINISHED = ("created", "running")


def run_folders(path: Path) -> list[RunDir]:
    """The run folders ``path`` is or holds: a run folder, a run store (its ``runs/``), or a
    ``runs/`` folder itself. Empty when it is none of these (then it may hold logs to ingest)."""
    path = Path(path)
    if not path.is_dir():
        return []
    if RunDir(path).looks_like_a_run():
        return [RunDir(path)]
    for folder in (path / "runs", path):
        if folder.is_dir():
            runs = [RunDir(p) for p in sorted(folder.iterdir())
                    if p.is_dir() and not p.is_symlink() and RunDir(p).looks_like_a_run()]
            if runs:
                return runs
    return []


def check_contents(run: RunDir) -> None:
    """The folder was written by someone else: regular files and folders only (a link, FIFO or
    device anywhere is refused, never opened), every size bounded, all from lstat before a byte
    is read or copied. Text files (logs, records) are parsed, so they get a tighter bound."""
    try:
        _, files = check_tree(run.path, RUN_FOLDER_LIMITS)
    except UntrustedInput as exc:
        raise IngestError(f"run folder: {exc}") from None
    for name, size in files:
        if "/" not in name and name.endswith((".json", ".yaml")) and size > MAX_RECORD_BYTES:
            raise IngestError(f"{run.path / name}: {size} bytes, more than a run's record holds ({MAX_RECORD_BYTES}); refused")
        if not name.endswith(CHECKPOINT_SUFFIX) and size > MAX_TEXT_FILE_BYTES:
            raise IngestError(f"{run.path / name}: {size} bytes, more than a log or record of a run holds "
                              f"({MAX_TEXT_FILE_BYTES}); refused")


def check_importable(run: RunDir) -> None:
    """One line (IngestError) when the folder cannot be imported as it is."""
    if not RUN_ID_PATTERN.match(run.path.name):
        raise IngestError(f"{run.path}: the folder name is not a run id (expected e.g. "
                          "20261125T201500Z-smoke_cpu-a1b2c3): import the run store, not a renamed copy")
    check_contents(run)
    problem = run.damage()
    if problem is None:
        try:
            recipe_of(run)  # its result is built from this recipe after the copy
        except DamagedRecord as exc:
            problem = str(exc)
    if problem:
        raise IngestError(problem)
    state = run.status().state
    if state in UNFINISHED:
        raise IngestError(f"{run.status_file}: state: the run is still {state}; import it once it has ended "
                          "(a pod killed without writing its end leaves 'running': set it to 'failed' to import)")


def _with_result(run: RunDir) -> None:
    """The result from the run's own logs, when its executor wrote none (a Kubernetes run)."""
    from harness.results.run_result import build_result

    if run.result() is not None:
        return
    recipe = recipe_of(run)
    plan = run.read(PlanRecord)
    run.write(build_result(run, recipe, plan.world_size if plan else recipe.device.world_size))


def import_runs(runs: list[RunDir], results_dir: Path, *,
                on_message: Callable[[str], None] | None = None) -> list[RunDir]:
    """Copy ``runs`` (each checked with check_importable first) into ``results_dir``."""
    store = RunStore(results_dir)
    created = []
    for run in runs:
        adopted = store.adopt(run.run_id, run.path)
        if adopted is not None:
            # After the copy, under its final path: the result's sources name the stored logs.
            try:
                _with_result(adopted)
            except BaseException:
                shutil.rmtree(adopted.path, ignore_errors=True)  # whole or not at all
                raise
        if adopted is None:
            message = f"{run.path}: run {run.run_id} is already in {store.runs_dir}; skipped"
        else:
            created.append(adopted)
            result = adopted.result()
            miou = result.compared_metrics().mIoU if result else None
            numbers = f", {result.compared} mIoU {miou:.2f}" if miou is not None else ""
            message = f"{run.path}: imported run {run.run_id} ({adopted.status().state}{numbers})"
        if on_message:
            on_message(message)
    return created
