"""Experiment tracking without training: the recipe's `tracking` section (validation, plan, the
worker's config), the `tracking` extra missing, and `harness export mlflow` of a real stored run
(the fixture smoke_cpu run, 400 iterations) into a real SQLite MLflow store, twice."""
from __future__ import annotations

import json
import shutil
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.core.errors import BadInput
from harness.planning.recipe import load_recipe
from harness.store.records import RunResult
from support import RECIPES, REPO, run_cli

FIXTURE_RUN = REPO / "tests" / "fixtures" / "runs" / "20261125T210711Z-smoke_cpu-206fec"
SMOKE = str(RECIPES / "smoke_cpu.yaml")


def tracking_set(backends: str = "[tensorboard, mlflow]", uri: str | None = "sqlite:////tmp/mlflow.db") -> str:
    section = f"backends: {backends}" + (f", mlflow_uri: '{uri}'" if uri is not None else "")
    return f"tracking={{{section}}}"


@pytest.mark.parametrize("value, expected", [
    ("tracking={backends: [mlflow]}", "tracking: Value error, mlflow_uri is required with backend mlflow"),
    ("tracking={backends: [wandb]}", "tracking.backends.0: Input should be 'tensorboard' or 'mlflow'"),
    ("tracking={backends: []}", "tracking.backends: List should have at least 1 item"),
    ("tracking={backends: [tensorboard, tensorboard]}", "names a backend twice"),
    ("tracking={backends: [tensorboard], mlflow_uri: 'http://h:5000'}", "mlflow_uri goes with backend mlflow"),
    ("tracking={backends: [mlflow], mlflow_uri: 'sqlite:///rel.db'}",
     "a sqlite store needs an absolute path (sqlite:////abs/path)"),
    ("tracking={backends: [mlflow], mlflow_uri: 'localhost'}", "expected a URI with a scheme"),
    ("tracking={backends: [tensorboard], colour: red}", "tracking.colour: unknown key (not a recipe field)"),
])
def test_a_bad_tracking_section_is_one_line_naming_the_field(value, expected):
    with pytest.raises(BadInput) as caught:
        load_recipe(RECIPES / "smoke_cpu.yaml", [value])
    message = str(caught.value)
    assert message.startswith(f"{RECIPES / 'smoke_cpu.yaml'}: tracking") and expected in message, message
    assert "\n" not in message


def test_plan_streams_to_the_backends_after_mmsegs_local_one():
    proc = run_cli("plan", SMOKE, "--json", "--set", tracking_set())
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["job"]["tracking"] == {"backends": ["tensorboard", "mlflow"], "mlflow_uri": "sqlite:////tmp/mlflow.db",
                                       "experiment": "smoke_cpu", "run_id": "<run-id>", "recipe": "smoke_cpu"}
    changes = plan["config_changes"]
    assert "visualizer.vis_backends.0.type" not in changes  # LocalVisBackend stays as it was
    assert changes["visualizer.vis_backends.1.type"] == "TensorboardVisBackend"
    assert changes["visualizer.vis_backends.2.type"] == "GuardedMLflowVisBackend"
    assert changes["visualizer.vis_backends.2.tags.harness.run_id"] == "<run-id>"
    assert changes["visualizer.vis_backends.2.artifact_location"] == "/tmp/mlartifacts"  # beside the store


def test_the_worker_config_keeps_local_vis_and_adds_the_backends(tmp_path):
    pytest.importorskip("mmseg", reason="the training stack (pip install -e '.[train]') is not installed")
    from harness.commands.execute import plan_inputs
    from harness.planning.plan import build_job
    from harness.planning.mmseg_config import build_config

    loaded = load_recipe(RECIPES / "smoke_cpu.yaml", [tracking_set(uri=f"sqlite:///{tmp_path}/m.db"),
                                                       "tracking.experiment=cpu-runs"])
    job = build_job(loaded.recipe, plan_inputs(loaded, tmp_path / "runs" / "RUN-1", tmp_path / "data"), "local")
    job = replace(job, config=str(loaded.config_path))  # the recipe's own config, not the run folder's copy
    cfg, notes = build_config(job)
    backends = cfg["visualizer"]["vis_backends"]
    assert [b["type"] for b in backends] == ["LocalVisBackend", "TensorboardVisBackend", "GuardedMLflowVisBackend"]
    assert "harness.worker.vis_backends" in cfg["custom_imports"]["imports"]
    assert backends[2]["exp_name"] == "cpu-runs" and backends[2]["tracking_uri"] == f"sqlite:///{tmp_path}/m.db"
    assert backends[2]["tags"] == {"harness.run_id": "RUN-1", "harness.planning.recipe": "smoke_cpu"}
    assert "streams to tensorboard, mlflow" in notes


def test_a_container_cannot_stream_to_a_store_on_the_hosts_disk():
    proc = run_cli("plan", SMOKE, "--executor", "docker", "--set", tracking_set())
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"harness: error: {RECIPES / 'smoke_cpu.yaml'}: tracking.mlflow_uri 'sqlite:////tmp/mlflow.db': a container "
        "cannot reach a store on the host's disk; give a tracking server (http://HOST:PORT), or run with --executor local")
    server = run_cli("plan", SMOKE, "--executor", "docker", "--set", tracking_set(uri="http://mlflow.lan:5000"))
    assert server.returncode == 0, server.stderr


def without(modules: list[str], *argv: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    """The harness in a Python where ``modules`` cannot be imported (``sys.modules[name] = None`` is
    how Python itself marks a module as absent: ``import`` raises ImportError)."""
    import subprocess

    code = ("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
            + "from harness.cli import main\nsys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_without_the_extra_a_tracking_recipe_stops_before_anything_is_written(tmp_path, command):
    results = tmp_path / "results"
    extra = ["--results", str(results)] if command == "run" else []
    proc = without(["tensorboard"], command, SMOKE, "--set", tracking_set(), *extra, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip() == (
        f"harness: error: {RECIPES / 'smoke_cpu.yaml'}: tracking.backends ['tensorboard', 'mlflow'] needs the Python "
        "package(s) tensorboard, not installed here: pip install 'pspnet-repro[tracking]' (the `tracking` extra)")
    assert not results.exists() and list(tmp_path.iterdir()) == []
    untracked = without(["tensorboard", "mlflow"], "plan", SMOKE, cwd=tmp_path)
    assert untracked.returncode == 0, untracked.stderr  # the harness itself does not need the extra


# --- harness export mlflow ------------------------------------------------------------------------


@pytest.fixture
def stored_run(tmp_path) -> tuple[Path, str]:
    results = tmp_path / "results"
    shutil.copytree(FIXTURE_RUN, results / "runs" / FIXTURE_RUN.name)
    return results, FIXTURE_RUN.name


def mlflow_runs(uri: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments) if experiments else []


def history(client, run, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))


def test_export_of_a_stored_run_twice_gives_one_mlflow_run_without_duplicates(stored_run, tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra (pip install -e '.[tracking]') is not installed")
    results, run_id = stored_run
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    first = run_cli("export", "mlflow", run_id, "--results", str(results), "--tracking-uri", uri, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    client, [run] = mlflow_runs(uri)
    assert first.stdout.startswith(f"run {run_id} -> MLflow run {run.info.run_id} (created, experiment 'smoke_cpu'): ")
    result = RunResult.model_validate_json((results / "runs" / run_id / "result.json").read_text())

    assert run.info.status == "FINISHED" and run.info.run_name == run_id
    assert run.data.tags["harness.run_id"] == run_id and run.data.tags["harness.state"] == "succeeded"
    assert run.data.tags["harness.device"] == "CPU-1p" and run.data.tags["harness.planning.recipe"] == "smoke_cpu"
    assert run.data.tags["harness.results.verdict.mIoU"] == result.verdict("mIoU").status
    params = run.data.params
    assert params["recipe.train.iterations"] == "400" and params["plan.executor"] == "local"
    assert params["provenance.packages.torch"] and params["worker.packages.mmengine"] == "0.10.7"
    metrics = run.data.metrics
    for which in ("final", "best"):
        for name in ("aAcc", "mIoU", "mAcc"):
            assert metrics[f"{which}.{name}"] == pytest.approx(getattr(getattr(result, which), name))
    assert metrics["fps"] == pytest.approx(result.fps)
    loss = history(client, run, "loss")
    assert loss == [(p.iter, pytest.approx(p.loss)) for p in sorted(result.train, key=lambda p: p.iter)]
    assert [step for step, _ in history(client, run, "mIoU")] == [e.iteration for e in result.evaluations]

    # the artifact is the run's bundle, and it verifies
    [artifact] = client.list_artifacts(run.info.run_id, "harness")
    assert artifact.path == f"harness/{run_id}.tar.gz"
    local = client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path))
    checked = run_cli("verify", local, cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.startswith("PASS"), checked.stdout

    # a second export: the same MLflow run, params kept, tags updated, no metric step twice
    client.set_tag(run.info.run_id, "harness.state", "running")
    client.log_param(run.info.run_id, "note", "added by hand")
    again = run_cli("export", "mlflow", run_id, "--results", str(results), "--tracking-uri", uri, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"(updated, experiment 'smoke_cpu'): 0 params ({len(params)} already there, kept), 0 metric points" in again.stdout
    client, [same] = mlflow_runs(uri)
    assert same.info.run_id == run.info.run_id and same.data.tags["harness.state"] == "succeeded"
    assert same.data.params == {**params, "note": "added by hand"}
    assert history(client, same, "loss") == loss
    assert not (tmp_path / "mlruns").exists()  # artifacts beside the store, not under the working folder


def test_a_run_already_in_the_store_keeps_its_params(stored_run, tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra is not installed")
    from mlflow import MlflowClient

    results, run_id = stored_run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("streamed", artifact_location=str(tmp_path / "artifacts"))
    streamed = client.create_run(experiment, tags={"harness.run_id": run_id})
    client.log_param(streamed.info.run_id, "recipe.train.iterations", "20")  # as it was streamed, say
    client.log_metric(streamed.info.run_id, "loss", 9.0, step=10)
    proc = run_cli("export", "mlflow", run_id, "--results", str(results), "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(updated, experiment 'streamed')" in proc.stdout and "(1 already there, kept)" in proc.stdout
    client, [run] = mlflow_runs(uri)
    assert run.info.run_id == streamed.info.run_id and run.data.params["recipe.train.iterations"] == "20"
    loss = history(client, run, "loss")
    assert [step for step, _ in loss].count(10) == 1 and dict(loss)[10] == 9.0  # the streamed point stays


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_export_refuses_bad_input_and_an_unreachable_store_in_one_line(stored_run, tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra is not installed")
    results, run_id = stored_run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cases = [
        (["nope"], uri, 2, "run id 'nope': expected an id like"),
        ([run_id], "mlflow.db", 2, "--tracking-uri 'mlflow.db': expected a URI such as"),
        ([run_id], f"http://127.0.0.1:{free_port()}", 3, "Connection refused"),
    ]
    for targets, tracking_uri, code, expected in cases:
        proc = run_cli("export", "mlflow", *targets, "--results", str(results), "--tracking-uri", tracking_uri,
                       cwd=tmp_path, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == code and len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_an_ingested_run_exports_and_a_run_that_cannot_leaves_nothing_sent(stored_run, tmp_path):
    """A run ingested from logs made elsewhere (no plan.json) exports; a command with one run that
    cannot be exported (no result.json) sends none of its runs."""
    pytest.importorskip("mlflow", reason="the tracking extra is not installed")
    results, run_id = stored_run
    ingested = run_cli("ingest", str(REPO / "tests" / "fixtures" / "logs" / "own_smoke_cpu_1p"), "--results", str(results))
    assert ingested.returncode == 0, ingested.stderr
    [other] = [p.name for p in (results / "runs").iterdir() if p.name != run_id]
    (results / "runs" / run_id / "result.json").unlink()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_cli("export", "mlflow", other, run_id, "--results", str(results), "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(f"run {run_id}: no result.json yet (still running, "
                                                                 "or never parsed); nothing to export"), proc.stderr
    assert mlflow_runs(uri)[1] == []
    proc = run_cli("export", "mlflow", other, "--results", str(results), "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    client, [run] = mlflow_runs(uri)
    assert run.data.tags["harness.run_id"] == other and "plan.executor" not in run.data.params
    assert run.data.params["provenance.ingested_from"].endswith("own_smoke_cpu_1p")
    assert run.data.metrics["best.mIoU"] == pytest.approx(68.62)


def test_export_without_the_extra_names_it(stored_run, tmp_path):
    results, run_id = stored_run
    proc = without(["mlflow"], "export", "mlflow", run_id, "--results", str(results), "--tracking-uri",
                   f"sqlite:///{tmp_path}/m.db", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.strip() == ("harness: error: harness export mlflow needs the mlflow package, not installed here: "
                                   "pip install 'pspnet-repro[tracking]' (the `tracking` extra)")
    assert not (tmp_path / "m.db").exists()


def test_the_images_carry_the_tracking_extra():
    """A container streams to a tracking server only if its image has the extra: every image
    lock holds the extra's pins (the Dockerfiles install the locks, tests/test_docker_files.py)."""
    import re
    import tomllib

    from harness.executors import images, image_locks as locks

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tracking"]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", req).groups() for req in extra)
    assert set(pins) == {"mlflow-skinny", "sqlalchemy", "alembic", "tensorboard"}
    for kind in images.KINDS:
        for lock in locks.lock_paths(kind, REPO):
            versions = locks.locked_versions(lock)
            assert {name: versions.get(name) for name in pins} == pins, lock


def test_a_tracking_server_that_fails_stops_the_stream_not_the_training(tmp_path, monkeypatch):
    """The worker's MLflow backend (mmengine's, guarded): an unreachable server is one warning in
    the training log, then silence; a reachable store gets the scalars and the config."""
    pytest.importorskip("mmseg", reason="the training stack is not installed")
    pytest.importorskip("mlflow", reason="the tracking extra is not installed")
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    from harness.worker.vis_backends import GuardedMLflowVisBackend

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    log = tmp_path / "train.log"
    MMLogger.get_instance("tracking-test", log_file=str(log))
    down = GuardedMLflowVisBackend(save_dir=str(tmp_path / "vis"), tracking_uri=f"http://127.0.0.1:{free_port()}")
    down.add_scalars({"loss": 1.0}, step=1)  # raised from inside the logger hook before
    down.add_scalars({"loss": 0.9}, step=2)
    down.close()
    warnings = [line for line in log.read_text().splitlines() if "MLflow streaming stopped" in line]
    assert down.stopped and len(warnings) == 1 and "the training goes on" in warnings[0]

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    up = GuardedMLflowVisBackend(save_dir=str(tmp_path / "vis"), tracking_uri=uri, exp_name="guarded",
                                 tags={"harness.run_id": "RUN-1"}, artifact_location=str(tmp_path / "artifacts"))
    up.add_config(Config(dict(work_dir=str(tmp_path / "vis"), train_cfg=dict(max_iters=20))))
    up.add_scalars({"loss": 1.0}, step=5)
    up.close()
    client, [run] = mlflow_runs(uri)
    assert not up.stopped and run.info.status == "FINISHED" and run.data.params["train_cfg.max_iters"] == "20"
    assert history(client, run, "loss") == [(5, 1.0)]
