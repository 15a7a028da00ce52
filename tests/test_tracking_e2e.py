"""A real CPU training with `tracking.backends: [tensorboard, mlflow]` streams its curves live
(TensorBoard event files, an MLflow run in a real SQLite store), and `harness export mlflow` of the
run and of its group sends it again without duplicating anything. One training (a group of one,
20 iterations) serves every check."""
from __future__ import annotations

import json

import pytest

from harness.store.runs import GroupStore, RunStore
from support import RECIPES, run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("mmseg", reason="the training stack (pip install -e '.[train]') is not installed")
pytest.importorskip("mlflow", reason="the tracking extra (pip install -e '.[tracking]') is not installed")
pytest.importorskip("tensorboard", reason="the tracking extra (pip install -e '.[tracking]') is not installed")

SHORT = ("--set", "train.iterations=20", "--set", "train.val_interval=10", "--set", "train.log_interval=5",
         "--set", "train.checkpoint_interval=20")


def scalars(event_file, name: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(event_file))
    reader.Reload()
    return [(event.step, event.value) for event in reader.Scalars(name)]


def store_runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client, client.search_runs([e.experiment_id for e in client.search_experiments()])


def history(client, run, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))


def test_a_tracked_training_streams_live_and_exports_without_duplicates(tmp_path, cache_env):
    results, live = tmp_path / "results", f"sqlite:///{tmp_path}/live/mlflow.db"
    (tmp_path / "live").mkdir()
    tracking = f"tracking={{backends: [tensorboard, mlflow], mlflow_uri: '{live}', experiment: e2e}}"
    proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--repeat", "1", "--results", str(results), "--quiet",
                   "--no-report", *SHORT, "--set", tracking, env=cache_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run], [group] = RunStore(results).all(), GroupStore(results).all()
    result = run.result()
    train = sorted((p.iter, p.loss) for p in result.train)
    evaluations = [(e.iteration, e.mIoU) for e in result.evaluations]
    assert [step for step, _ in train] == [5, 10, 15, 20] and [step for step, _ in evaluations] == [10, 20]

    # TensorBoard: event files beside mmseg's vis_data/scalars.json, read back by tensorboard's reader
    [events] = run.work_dir.glob("*/vis_data/events.out.tfevents.*")
    assert (events.parent / "scalars.json").is_file()  # LocalVisBackend still writes what the harness parses
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in scalars(events, "loss")] == train
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in scalars(events, "mIoU")] == evaluations

    # MLflow, streamed live: one run tagged with the harness run, the same curves
    client, [streamed] = store_runs(live)
    assert streamed.data.tags["harness.run_id"] == run.run_id and streamed.info.status == "FINISHED"
    assert client.get_experiment(streamed.info.experiment_id).name == "e2e"
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in history(client, streamed, "loss")] == train
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in history(client, streamed, "mIoU")] == evaluations
    live_params = streamed.data.params
    assert not (tmp_path / "mlruns").exists() and (tmp_path / "live" / "mlartifacts").is_dir()

    # export into the live store: the streamed run is found and completed, no step twice
    exported = run_cli("export", "mlflow", run.run_id, "--results", str(results), "--tracking-uri", live, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert f"MLflow run {streamed.info.run_id} (updated, experiment 'e2e')" in exported.stdout
    client, [completed] = store_runs(live)
    assert completed.data.metrics["final.mIoU"] == pytest.approx(result.final.mIoU)
    assert completed.data.tags["harness.results.verdict.mIoU"] == result.verdict("mIoU").status
    assert {k: v for k, v in completed.data.params.items() if k in live_params} == live_params  # kept
    for name, expected in (("loss", train), ("mIoU", evaluations)):
        assert [step for step, _ in history(client, completed, name)] == [step for step, _ in expected]

    # export of the group into a fresh store, twice: one MLflow run, nothing doubled
    fresh = f"sqlite:///{tmp_path}/fresh.db"
    for attempt in range(2):
        proc = run_cli("export", "mlflow", group.group_id, "--results", str(results), "--tracking-uri", fresh,
                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert ("(created, experiment 'smoke_cpu')" if attempt == 0 else "0 metric points") in proc.stdout
    client, [mirrored] = store_runs(fresh)
    assert mirrored.data.tags["harness.run_id"] == run.run_id
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in history(client, mirrored, "loss")] == train
    assert [(s, pytest.approx(v, rel=1e-5)) for s, v in history(client, mirrored, "mIoU")] == evaluations
    assert json.loads(mirrored.data.params["plan.device_ids"]) == [0]
