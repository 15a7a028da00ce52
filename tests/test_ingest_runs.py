"""`harness ingest` of run folders the harness laid out elsewhere: a Kubernetes results PVC
(`harness k8s` pods write the run store's layout but, running torchrun rather than the harness,
no result.json) or another host's results/."""
from __future__ import annotations

import json
import shutil

import pytest

from harness.store.runs import RunStore
from support import REPO, run_cli

RUN_ID = "20261125T210711Z-smoke_cpu-206fec"
FIXTURE_RUN = REPO / "tests" / "fixtures" / "runs" / RUN_ID  # a real smoke_cpu run, 400 iterations


def pvc_with_the_run(tmp_path, *, keep_result: bool = False):
    pvc = tmp_path / "pvc"
    shutil.copytree(FIXTURE_RUN, pvc / "runs" / RUN_ID)
    if not keep_result:
        (pvc / "runs" / RUN_ID / "result.json").unlink()  # what a Kubernetes run leaves
    return pvc


def test_a_results_pvcs_runs_are_imported_with_their_result_built_from_their_logs(tmp_path):
    pvc, store = pvc_with_the_run(tmp_path), tmp_path / "results"
    proc = run_cli("ingest", str(pvc), "--results", str(store))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{pvc / 'runs' / RUN_ID}: imported run {RUN_ID} (succeeded, final mIoU 68.62)"
    [run] = RunStore(store).all()
    assert run.run_id == RUN_ID and run.effective_state() == "succeeded"
    original = json.loads((FIXTURE_RUN / "result.json").read_text())
    result = run.result()
    assert result.fps == pytest.approx(original["fps"]) and result.final.model_dump() == original["final"]
    assert result.sources["final"].startswith(str(run.work_dir))  # the stored copy's log, file:line
    report = run_cli("report", "--results", str(store))
    assert report.returncode == 0, report.stderr
    assert f"CPU-1p smoke_cpu `{RUN_ID}`" in (store / "README.md").read_text()

    # the same run again (here named by its own folder): nothing changes
    again = run_cli("ingest", str(pvc / "runs" / RUN_ID), "--results", str(store))
    assert again.returncode == 0 and again.stdout.strip().endswith(f"run {RUN_ID} is already in {store / 'runs'}; skipped")
    assert len(RunStore(store).all()) == 1


def test_a_run_with_its_result_keeps_it(tmp_path):
    pvc, store = pvc_with_the_run(tmp_path, keep_result=True), tmp_path / "results"
    assert run_cli("ingest", str(pvc / "runs"), "--results", str(store)).returncode == 0
    [run] = RunStore(store).all()
    assert run.result_file.read_bytes() == (FIXTURE_RUN / "result.json").read_bytes()


def _running(run_dir):
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "state": "running"}))


def _renamed(run_dir):
    run_dir.rename(run_dir.parent / "my-run")


def _damaged(run_dir):
    (run_dir / "plan.json").write_text("{not json")


def _recipe_edited(run_dir):
    recipe = run_dir / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("count: 1", "count: 0"))


@pytest.mark.parametrize("spoil, message", [
    (_running, "status.json: state: the run is still running; import it once it has ended"),
    (_renamed, "my-run: the folder name is not a run id"),
    (_damaged, "plan.json"),
    (_recipe_edited, "recipe.yaml"),
])
def test_a_run_folder_that_cannot_be_imported_is_one_line_and_nothing_is_written(tmp_path, spoil, message):
    pvc, store = pvc_with_the_run(tmp_path), tmp_path / "results"
    spoil(pvc / "runs" / RUN_ID)
    proc = run_cli("ingest", str(pvc), "--results", str(store))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not store.exists()
