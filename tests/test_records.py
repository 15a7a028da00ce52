"""The run contract: typed, versioned records that only RunDir reads and writes; damaged runs are
one line; the executor protocol lets a new executor be one class (a test double here)."""
from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest

from harness.executors import executor_names, get_executor
from harness.store.records import RECORD_FILES, RECORDS, DamagedRecord, PlanRecord, RunResult, RunStatus, json_schemas
from harness.store.runs import RunDir, RunStore
from support import RECIPES, REPO, run_cli, mount_tmpfs, umount

sys.path.insert(0, str(Path(__file__).parent))
EXAMPLE_ID = "20261125T210711Z-smoke_cpu-206fec"
# The un-versioned (v0) example run: results/ in older checkouts, tests/fixtures/runs/ later.
EXAMPLE = next((p for p in (REPO / "tests" / "fixtures" / "runs" / EXAMPLE_ID, REPO / "results" / "runs" / EXAMPLE_ID)
                if p.is_dir()), None)


def example_store(tmp_path: Path, *names: str) -> list[RunDir]:
    """Copies of the v0 example run under new run ids (recipe.yaml, records, logs)."""
    assert EXAMPLE is not None, "the committed v0 example run is missing"
    runs = []
    for i, name in enumerate(names):
        path = tmp_path / "runs" / f"20261125T210711Z-{name}-{i:06x}"
        shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("*.pth", "plots"))
        runs.append(RunDir(path))
    return runs


def test_committed_schemas_equal_the_generated_ones(tmp_path):
    proc = run_cli("schema", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    committed = sorted(p.name for p in (REPO / "docs" / "schemas").glob("*.schema.json"))
    assert committed == sorted(p.name for p in tmp_path.iterdir())
    assert len(committed) == len(RECORDS) + 1  # the records and compare.schema.json (harness compare --json)
    assert "compare.schema.json" in committed and "group.schema.json" in committed
    for name in committed:
        assert json.loads((REPO / "docs" / "schemas" / name).read_text()) == json.loads((tmp_path / name).read_text()), name
    single = run_cli("schema", "RunStatus")
    assert json.loads(single.stdout) == json_schemas()["RunStatus"]
    assert run_cli("schema", "Nope").returncode == 2


def _fields_missing_from(schema: dict, data, node: dict | None = None, where: str = "") -> list[str]:
    """The keys of ``data`` (nested objects and lists of them included) that ``schema`` does not declare."""
    node = schema if node is None else node
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    for option in node.get("anyOf", []):
        if option.get("type") != "null":
            return _fields_missing_from(schema, data, option, where)
    if isinstance(data, list):
        return [m for i, item in enumerate(data) for m in _fields_missing_from(schema, item, node.get("items", {}), f"{where}[{i}]")]
    if not isinstance(data, dict) or "properties" not in node:
        return []
    missing = []
    for key, value in data.items():
        if key in node["properties"]:
            missing += _fields_missing_from(schema, value, node["properties"][key], f"{where}.{key}")
        else:
            missing.append(f"{where}.{key}")
    return missing


@pytest.mark.parametrize("recipe, sets", [
    ("gpu_perf_8p", ["tracking={backends: [tensorboard, mlflow], mlflow_uri: 'http://mlflow.lan:5000'}"]),
    ("smoke_cpu", []),
])
def test_every_field_of_a_real_job_json_is_in_its_schema(recipe, sets):
    from harness.planning.plan import PlanInputs, build_plan
    from harness.planning.recipe import load_recipe
    from harness.store.records import JobRecord, dump_record

    plan = build_plan(load_recipe(RECIPES / f"{recipe}.yaml", sets).recipe,
                      PlanInputs(run_dir="/r/runs/R", dataset_dir="/d", config_name="c.py"), "local")
    written = json.loads(dump_record(JobRecord.model_validate(plan.job.to_dict())))  # job.json as the harness writes it
    assert written["train"] and (written["tracking"] or not sets)
    schema = json.loads((REPO / "docs" / "schemas" / "job.schema.json").read_text())
    assert _fields_missing_from(schema, written) == []


def test_the_unversioned_example_run_migrates(tmp_path):
    (run,) = example_store(tmp_path, "smoke_cpu")
    assert "schema_version" not in json.loads((run.path / "result.json").read_text())
    assert run.damage() is None
    status, result, plan = run.status(), run.result(), run.plan()
    assert status.state == "succeeded" and status.schema_version == 1 and status.attempts == 1
    assert result.schema_version == 1 and result.iterations == 400 and result.compared == "final"
    assert result.final.mIoU == pytest.approx(result.compared_metrics().mIoU) and result.verdict("fps").status == "NONE"
    assert plan.executor == "local" and plan.job.train.batch_per_device == 4
    assert run.dataset().check_ok and run.provenance().packages["mmengine"] == "0.10.7"
    assert run.worker_env().torch_threads == 2 and run.recipe_source().path.endswith("smoke_cpu.yaml")
    run.write(result)  # written back as version 1, and read again the same
    assert json.loads((run.path / "result.json").read_text())["schema_version"] == 1
    assert run.result() == result


@pytest.mark.parametrize("text,expected", [
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object, found list"),
    ('{"state": 5}', "field state"),
    ('{"state": "succeeded", "attempts": "many"}', "field attempts"),
    ('{"schema_version": 2, "state": "succeeded"}', "schema_version 2 is not one this harness reads"),
    ('{"schema_version": 0, "state": "succeeded"}', "schema_version 0 is not one this harness reads"),
])
def test_a_damaged_or_unknown_record_is_one_clear_error(tmp_path, text, expected):
    run = RunStore(tmp_path).create("x")
    (run.path / "status.json").write_text(text)
    with pytest.raises(DamagedRecord) as err:
        run.status()
    message = str(err.value)
    assert str(run.path / "status.json") in message and expected in message and "\n" not in message
    assert run.effective_state() == "damaged"


def test_no_module_outside_runs_opens_a_run_folder_record():
    """The record files are named only by harness.store.records (their models) and harness.store.runs."""
    offenders = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        if path.name in ("runs.py", "records.py"):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if any(node.value == name or node.value.endswith("/" + name) for name in RECORD_FILES):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr in ("read_json", "write_json"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: .{node.attr}")
    assert offenders == []
    # and the check itself can fail: runs.py names them through the models
    assert "status.json" in RunStatus.FILE and PlanRecord.FILE == "plan.json"


def damaged_store(tmp_path: Path) -> tuple[list[RunDir], RunDir]:
    good, bad_status, bad_result, no_recipe, no_job, bad_recipe = example_store(
        tmp_path, "good", "bad_status", "bad_result", "no_recipe", "no_job", "edited_recipe")
    (bad_status.path / "status.json").write_text('{"state": ["succeeded"]}')
    (bad_result.path / "result.json").write_text('{"run_id": 3}')
    (no_recipe.path / "recipe.yaml").unlink()
    (no_job.path / "job.json").unlink()
    text = (bad_recipe.path / "recipe.yaml").read_text()
    (bad_recipe.path / "recipe.yaml").write_text(text.replace("iterations: 400", "iterations: -5"))
    return [bad_status, bad_result, no_recipe, no_job, bad_recipe], good


def test_runs_and_report_survive_one_damaged_run_of_each_kind(tmp_path):
    damaged, good = damaged_store(tmp_path)
    proc = run_cli("runs", "--results", str(tmp_path))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()[1:]
    assert len(lines) == 6
    by_id = {line.split()[0]: line for line in lines}
    assert by_id[good.run_id].split()[1] == "succeeded"
    for run, what in zip(damaged[:4], ("status.json: damaged record: field state", "result.json: damaged record: field run_id",
                                       "recipe.yaml: missing", "job.json: missing")):
        assert by_id[run.run_id].split()[1] == "damaged" and what in by_id[run.run_id], by_id[run.run_id]
    as_json = json.loads(run_cli("runs", "--json", "--results", str(tmp_path)).stdout)
    assert [e["state"] for e in as_json].count("damaged") == 4
    report = run_cli("report", "--results", str(tmp_path))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    text = (tmp_path / "README.md").read_text()
    assert f"`{good.run_id}` | smoke_cpu | succeeded | 400 |" in text
    for run in damaged:
        assert f"`{run.run_id}` | ? | damaged" in text, run.run_id
    assert "train.iterations: Input should be greater than 0" in text or "train.iterations" in text


def test_resume_of_a_damaged_run_is_one_line(tmp_path):
    damaged, _ = damaged_store(tmp_path)
    for run in damaged:
        proc = run_cli("run", "--resume", run.run_id, "--results", str(tmp_path))
        assert proc.returncode == 2, (run.run_id, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert run.run_id in proc.stderr or str(run.path) in proc.stderr
    edited = damaged[-1]
    assert "recipe.yaml: train.iterations" in run_cli("run", "--resume", edited.run_id, "--results", str(tmp_path)).stderr


def test_resume_while_another_harness_holds_the_run_is_refused(tmp_path):
    (run,) = example_store(tmp_path, "held")
    with run.lock():
        proc = run_cli("run", "--resume", run.run_id, "--force", "--results", str(tmp_path))
    assert proc.returncode == 3 and "another harness process is running it" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert run.status().attempts == 1


@pytest.mark.parametrize("make", ["file", "read_only_mount", "unwritable_cache"])
def test_unusable_results_or_cache_folder_is_exit_3(tmp_path, make):
    import os

    results = tmp_path / "results"
    env = dict(os.environ)
    if make == "file":
        results.write_text("not a folder")
    elif make == "read_only_mount":
        mount_tmpfs(results, "ro,size=1m")
    else:
        mount_tmpfs(tmp_path / "cache", "ro,size=1m")
        env["PSPNET_CACHE"] = str(tmp_path / "cache" / "pspnet")
    try:
        proc = run_cli("run", str(RECIPES / "smoke_cpu.yaml"), "--results", str(results), "--set", "train.iterations=2",
                       env=env)
    finally:
        if make != "file":
            umount(results if make == "read_only_mount" else tmp_path / "cache")
    assert proc.returncode == 3, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (str(results) if make != "unwritable_cache" else str(tmp_path / "cache")) in proc.stderr
    if make == "unwritable_cache":
        assert not results.exists()


def test_runs_piped_into_a_closed_pipe(tmp_path):
    example_store(tmp_path, "a", "b", "c")
    proc = run_cli_shell(f"{sys.executable} -m harness runs --results {tmp_path} | head -1")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def run_cli_shell(command: str):
    import subprocess

    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_image_build_without_an_engine_is_exit_3(tmp_path):
    import os

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no.sock"}
    proc = run_cli("image", "build", "cpu", env=env)
    assert proc.returncode == 3 and "does not answer" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_new_executor_is_one_class(tmp_path, cache_env):
    """The double registers itself; the harness drives it through prepare/start/wait/describe and
    records its Outcome (a failed node) and description (image) like any executor's."""
    from executor_double import NodeFailureDouble

    from harness.commands.execute import resume_run, run_recipe
    from harness.core.errors import EnvironmentNotReady
    from harness.planning.recipe import load_recipe

    assert "double" in executor_names() and get_executor("double") is NodeFailureDouble
    loaded = load_recipe(RECIPES / "smoke_cpu.yaml", ["train.iterations=2"], for_run=True)
    NodeFailureDouble.calls.clear()
    outcome = run_recipe(loaded, results_dir=tmp_path, executor="double", quiet=True)
    assert NodeFailureDouble.calls == ["prepare", "prepare", "start", "wait"]
    run = outcome.run
    assert outcome.state == "failed" and outcome.exit_code == 1
    status = run.status()
    assert status.reason == "node node-b failed (exit code 7)" and status.executor == "double"
    assert "double: node-b exited 7" in status.last_lines
    assert run.plan().executor == "double" and run.provenance().image.image_id == "sha256:double"
    assert isinstance(run.result(), RunResult) and not run.is_live()
    # Resume goes through the same pre-flight: engine down -> exit 3, and no attempt is recorded.
    NodeFailureDouble.engine_up = False
    try:
        with pytest.raises(EnvironmentNotReady) as err:
            resume_run(run.run_id, results_dir=tmp_path)
        assert err.value.exit_code == 3
    finally:
        NodeFailureDouble.engine_up = True
    assert run.status().attempts == 1 and run.status().state == "failed" and not run.is_live()
