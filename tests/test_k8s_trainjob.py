"""`harness k8s --flavor trainjob`: a Kubeflow Trainer v2 TrainJob and its namespaced TrainingRuntime,
checked offline against the Trainer v2.3.0 CRD schemas (tests/fixtures/crds/, see SOURCES; made strict)
and the harness's own rules, and the pod script run for real by sh with Trainer's PET_* variables."""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kubeflow_trainer_api", reason="the 'k8s' extra is not installed (pip install '.[k8s]')")

from harness.core.errors import BadInput  # noqa: E402
from harness.k8s.jobs import build_bundle  # noqa: E402
from harness.k8s.options import DATASET_MOUNT, RESULTS_MOUNT, RUN_FILES_MOUNT, K8sOptions  # noqa: E402
from harness.k8s.schema import schema_problems, strict_schema  # noqa: E402
from harness.k8s.validate import ManifestError, bundle_problems, check_manifests  # noqa: E402
from harness.planning.recipe import load_recipe  # noqa: E402
from harness.store.runs import RunStore  # noqa: E402
from support import RECIPES, run_cli  # noqa: E402

CRDS = Path(__file__).parent / "fixtures" / "crds"
DEVICE_RECIPES = {"npu": "full_8p", "gpu": "gpu_full_8p"}
RESOURCE = {"npu": "huawei.com/Ascend910", "gpu": "nvidia.com/gpu"}


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return {kind: strict_schema(json.loads((CRDS / f"trainer.kubeflow.org_v1alpha1_{kind.lower()}.json").read_text()))
            for kind in ("TrainJob", "TrainingRuntime")}


def bundle_for(recipe: str, nodes: int = 2, *sets: str, **options):
    loaded = load_recipe(RECIPES / f"{recipe}.yaml", [f"device.nodes={nodes}", *sets])
    return build_bundle(loaded, K8sOptions("trainjob", "training", "registry.example/pspnet:1", "voc-data", "pspnet-results",
                                           **options))


def of_kind(manifests, kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def runtime_pod(runtime: dict) -> dict:
    [node] = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    return node["template"]["spec"]["template"]["spec"]


def assert_valid(manifests, schemas) -> None:
    for manifest in manifests:
        if manifest["kind"] in schemas:
            assert schema_problems(manifest, schemas[manifest["kind"]]) == [], manifest["kind"]
    assert bundle_problems(list(manifests)) == []


@pytest.mark.parametrize("kind", DEVICE_RECIPES)
def test_two_node_8p_trainjob_and_runtime_pass_the_v2_3_0_schemas_and_the_rules(schemas, kind):
    bundle = bundle_for(DEVICE_RECIPES[kind])
    assert [m["kind"] for m in bundle.manifests] == ["ConfigMap", "TrainingRuntime", "TrainJob"]
    assert_valid(bundle.manifests, schemas)
    [runtime], job = of_kind(bundle.manifests, "TrainingRuntime"), bundle.job
    assert job["apiVersion"] == runtime["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert job["metadata"]["namespace"] == runtime["metadata"]["namespace"] == "training"
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime",
                                         "name": runtime["metadata"]["name"]}
    trainer = job["spec"]["trainer"]
    # Always explicit: Trainer's torch plugin counts only resources named *gpu*, so 'auto' on
    # huawei.com/Ascend910 would start one process per CPU.
    assert trainer["numProcPerNode"] == 8 and trainer["numNodes"] == 2
    assert job["metadata"]["annotations"]["pspnet-repro/master-port"] == "29500"  # the port Trainer gives the master
    assert trainer["resourcesPerNode"] == {"requests": {RESOURCE[kind]: "8"}, "limits": {RESOURCE[kind]: "8"}}
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 2, "torch": {}}
    assert "podGroupPolicy" not in runtime["spec"]
    [node] = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    assert node["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    pod = runtime_pod(runtime)
    [container] = pod["containers"]
    assert container["name"] == "node" and container["image"] == "registry.example/pspnet:1"
    assert container["resources"] == trainer["resourcesPerNode"]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": "32Gi"}
    script = container["command"][-1]
    for argument in ("--nnodes=2", "--nproc_per_node=8", '"--node_rank=$PET_NODE_RANK"',
                     '"--master_addr=$PET_MASTER_ADDR"', '"--master_port=$PET_MASTER_PORT"'):
        assert argument in script
    assert "WORLD_SIZE" not in script and f"{RESULTS_MOUNT}/runs/{bundle.run_id}" in script
    assert not any(e["name"].startswith("PET_") for e in container["env"])  # Trainer refuses its reserved names
    if kind == "npu":
        assert pod["hostNetwork"] is True and "securityContext" not in pod
    else:
        assert "hostNetwork" not in pod and pod["securityContext"]["runAsUser"] == 1000


def test_gang_volcano_sets_the_runtimes_pod_group_policy_and_queue(schemas):
    bundle = bundle_for("full_8p", 2, gang="volcano", queue="ascend")
    assert_valid(bundle.manifests, schemas)
    [runtime] = of_kind(bundle.manifests, "TrainingRuntime")
    assert runtime["spec"]["podGroupPolicy"] == {"volcano": {}}
    assert runtime["spec"]["template"]["metadata"]["annotations"] == {"scheduling.volcano.sh/queue-name": "ascend"}
    assert runtime_pod(runtime)["schedulerName"] == "volcano"


def test_a_runtime_on_the_cluster_gets_the_run_through_the_trainjob_alone(schemas):
    bundle = bundle_for("gpu_full_8p", 2, runtime="torch-distributed")
    assert [m["kind"] for m in bundle.manifests] == ["ConfigMap", "TrainJob"]
    assert_valid(bundle.manifests, schemas)
    spec = bundle.job["spec"]
    assert spec["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"}
    assert spec["trainer"]["numProcPerNode"] == 8 and spec["trainer"]["image"] == "registry.example/pspnet:1"
    assert "--nproc_per_node=8" in spec["trainer"]["command"][-1]
    [patch] = spec["runtimePatches"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert {v["name"] for v in pod["volumes"]} >= {"dataset", "results", "run-files", "shm"}
    assert pod["containers"][0]["name"] == "node"
    namespaced = bundle_for("gpu_full_8p", 2, runtime="trainingruntime/pspnet-gpu")
    assert namespaced.job["spec"]["runtimeRef"]["kind"] == "TrainingRuntime"
    assert_valid(namespaced.manifests, schemas)  # named, not written: the rules do not look for it in the file


@pytest.mark.parametrize("options, message", [
    ({"runtime": "torch-distributed"}, "hostNetwork"),
    ({"runtime": "torch-distributed", "gang": "volcano"}, "--gang"),
    ({"runtime": "Not_A_Name"}, "--runtime 'Not_A_Name'"),
])
def test_runtime_options_that_cannot_hold_are_refused(options, message):
    with pytest.raises(BadInput, match=message):
        bundle_for("full_8p", 2, **options)


@pytest.mark.parametrize("option", [{"runtime": "torch-distributed"}, {"gang": "volcano"}])
def test_trainjob_options_are_refused_for_the_other_flavours(option):
    with pytest.raises(BadInput, match="only for --flavor trainjob"):
        K8sOptions("pytorchjob", "training", "registry.example/pspnet:1", "voc-data", "pspnet-results", **option)


def _trainer(manifests):
    return manifests[-1]["spec"]["trainer"]


def _runtime(manifests):
    return of_kind(manifests, "TrainingRuntime")[0]


def _container(manifests):
    return runtime_pod(_runtime(manifests))["containers"][0]


BREAKS = [
    ("npu", lambda m: _trainer(m).pop("numProcPerNode"), "spec.trainer.numProcPerNode must be set explicitly"),
    ("gpu", lambda m: _trainer(m).update(numProcPerNode=4), "spec.trainer.numProcPerNode is 4, expected 8"),
    ("gpu", lambda m: _trainer(m).update(numNodes=3), "the job has 3 pods but 2 nodes are intended"),
    ("npu", lambda m: _trainer(m)["resourcesPerNode"]["limits"].update({"huawei.com/Ascend910": "4"}),
     "huawei.com/Ascend910 requests '8' != limits '4'"),
    ("gpu", lambda m: _container(m).update(name="trainer"), "no container named 'node'"),
    ("gpu", lambda m: _runtime(m)["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["metadata"]["labels"].clear(),
     "trainer.kubeflow.org/trainjob-ancestor-step: trainer"),
    ("gpu", lambda m: _trainer(m).setdefault("env", []).append({"name": "PET_NNODES", "value": "2"}),
     "spec.trainer.env: PET_NNODES is reserved"),
    ("gpu", lambda m: m[-1]["spec"]["runtimeRef"].update(name="other"), "names TrainingRuntime 'other', which is not in the file"),
    ("gpu", lambda m: _runtime(m)["spec"]["mlPolicy"].pop("torch"), "spec.mlPolicy.torch is needed"),
    ("gpu", lambda m: _runtime(m)["spec"]["mlPolicy"].update(mpi={}), "no other framework policy"),
    ("gpu", lambda m: _runtime(m)["metadata"].update(namespace="other"), "is in namespace 'other', the TrainJob in 'training'"),
    ("gpu", lambda m: m[-1]["metadata"].update(name="9pspnet.run"), "must be an RFC 1035 label"),
    ("npu", lambda m: runtime_pod(_runtime(m)).pop("hostNetwork"), "NPU pods need hostNetwork: true"),
    ("gpu", lambda m: _container(m).update(command=["/bin/sh", "-c", _container(m)["command"][-1].replace(
        "$PET_NODE_RANK", "$RANK")]), "torchrun needs --node_rank=$PET_NODE_RANK"),
    ("gpu", lambda m: [v["emptyDir"].pop("medium") for v in runtime_pod(_runtime(m))["volumes"] if v["name"] == "shm"],
     "/dev/shm must be an emptyDir with medium Memory"),
]


@pytest.mark.parametrize("kind, breaking, message", BREAKS, ids=[m for *_, m in BREAKS])
def test_a_hand_broken_trainjob_fails_with_a_clear_message(kind, breaking, message):
    manifests = copy.deepcopy(list(bundle_for(DEVICE_RECIPES[kind]).manifests))
    breaking(manifests)
    problems = bundle_problems(manifests)
    assert any(message in p for p in problems), problems
    with pytest.raises(ManifestError) as error:
        check_manifests(manifests, "broken.yaml")
    assert str(error.value).startswith("broken.yaml: ") and "\n" not in str(error.value)


def test_gang_volcano_without_the_volcano_scheduler_is_caught():
    manifests = copy.deepcopy(list(bundle_for("gpu_full_8p", 2, gang="volcano").manifests))
    runtime_pod(_runtime(manifests)).pop("schedulerName")
    assert any("schedulerName: must be 'volcano'" in p for p in bundle_problems(manifests))


@pytest.mark.parametrize("extra", [[], ["--gang", "volcano", "--queue", "research"]])
def test_cli_writes_a_trainjob_that_passes_the_schemas_and_rules(tmp_path, schemas, extra):
    proc = run_cli("k8s", str(RECIPES / "full_8p.yaml"), "--flavor", "trainjob", "--nodes", "2", "--namespace", "ml",
                   "--dataset-pvc", "voc", "--results-pvc", "runs", "-o", str(tmp_path / "out"), *extra)
    assert proc.returncode == 0, proc.stderr
    manifests = list(yaml.safe_load_all((tmp_path / "out" / "manifests.yaml").read_text()))
    assert [m["kind"] for m in manifests] == ["ConfigMap", "TrainingRuntime", "TrainJob"]
    assert_valid(manifests, schemas)
    assert manifests[-1]["spec"]["trainer"]["numProcPerNode"] == 8
    assert {m["metadata"]["namespace"] for m in manifests} == {"ml"}
    assert "16 ranks" in proc.stderr and "kubectl apply" in proc.stderr


def test_cli_refuses_an_npu_trainjob_on_a_named_runtime_in_one_line(tmp_path):
    proc = run_cli("k8s", str(RECIPES / "full_8p.yaml"), "--flavor", "trainjob", "--runtime", "torch-distributed",
                   "--dataset-pvc", "voc", "--results-pvc", "runs", "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "--runtime: NPU pods need hostNetwork" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def _pod_files(bundle, mount: Path, moves: list[tuple[str, str]]) -> str:
    """Lay the run-files ConfigMap out as the kubelet mounts it, with the pods' paths moved
    (``moves``: pod path -> local path); return the node's script, moved the same way."""
    def moved(text: str) -> str:
        for pod_path, local in moves:
            text = text.replace(pod_path, local)
        return text

    configmap = of_kind(bundle.manifests, "ConfigMap")[0]
    pod = runtime_pod(of_kind(bundle.manifests, "TrainingRuntime")[0])
    [volume] = [v for v in pod["volumes"] if v["name"] == "run-files"]
    for item in volume["configMap"]["items"]:
        (mount / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (mount / item["path"]).write_text(moved(configmap["data"][item["key"]]))
    return moved(pod["containers"][0]["command"][-1])


def test_the_pod_script_under_trainers_variables_keeps_the_run_store_layout_and_ingests(tmp_path):
    # The TrainingRuntime's own script, run for real by sh: only the pods' mount points move under
    # tmp_path and torchrun is replaced by a command that prints its rendezvous and fails.
    bundle = bundle_for("smoke_cpu_2node")
    results, mount = tmp_path / "results", tmp_path / "inputs"
    script = _pod_files(bundle, mount, [(RUN_FILES_MOUNT, str(mount)), (f"{RESULTS_MOUNT}/runs/", f"{results}/runs/")])
    assert "python -m torch.distributed.run" in script
    script = script.replace("python -m torch.distributed.run",
                            """sh -c 'echo "rank $PET_NODE_RANK at $PET_MASTER_ADDR:$PET_MASTER_PORT"; exit 3' torchrun""")
    trainer = {"PATH": os.environ["PATH"], "PET_NNODES": "2", "PET_NPROC_PER_NODE": "1",
               "PET_MASTER_ADDR": f"{bundle.name}-node-0-0.{bundle.name}", "PET_MASTER_PORT": "29500"}
    # A count that disagrees with the plan (Trainer's 'auto' on an NPU resource) stops before the run starts.
    wrong = subprocess.run(["sh", "-c", script], env={**trainer, "PET_NPROC_PER_NODE": "192", "PET_NODE_RANK": "0"},
                           capture_output=True, text=True)
    assert wrong.returncode == 1 and "PET_NPROC_PER_NODE=192" in wrong.stderr and not results.exists()
    runs = [subprocess.run(["sh", "-c", script], env={**trainer, "PET_NODE_RANK": str(rank)}, capture_output=True, text=True)
            for rank in (0, 1)]
    assert [run.returncode for run in runs] == [3, 3], [run.stderr for run in runs]
    run_dir = results / "runs" / bundle.run_id
    master = f"rank 0 at {bundle.name}-node-0-0.{bundle.name}:29500\n"
    assert (run_dir / "train.log").read_text() == master
    assert (run_dir / "nodes" / "node-1.log").read_text() == master.replace("rank 0", "rank 1")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["exit_code"] == 3 and status["executor"] == "kubernetes/trainjob"
    [run] = RunStore(results).all()
    assert run.run_id == bundle.run_id and run.effective_state() == "failed"
    imported = run_cli("ingest", str(results), "--results", str(tmp_path / "mine"))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"{run_dir}: imported run {bundle.run_id} (failed)"
    [mine] = RunStore(tmp_path / "mine").all()
    assert mine.effective_state() == "failed" and mine.result().parse_error


def test_the_strict_v2_3_0_schemas_reject_misspelt_trainer_fields(schemas):
    # The API server would drop them silently (numProcPerNode then falls back to 'auto').
    bundle = bundle_for("full_8p")
    job = copy.deepcopy(bundle.job)
    job["spec"]["trainer"]["numProcsPerNode"] = job["spec"]["trainer"].pop("numProcPerNode")
    assert any("numProcsPerNode" in p for p in schema_problems(job, schemas["TrainJob"]))
    runtime = copy.deepcopy(of_kind(bundle.manifests, "TrainingRuntime")[0])
    runtime["spec"]["podGroupPolicy"] = {"volcanoo": {}}
    assert any("volcanoo" in p for p in schema_problems(runtime, schemas["TrainingRuntime"]))


@pytest.mark.slow
def test_a_real_two_node_training_through_the_trainjob_pod_script_ingests_with_its_result(tmp_path):
    # The TrainingRuntime's script, its torchrun real: two "pods" on this host (both sh processes),
    # Trainer's PET_* variables pointing at 127.0.0.1, the pods' mounts moved under tmp_path.
    # 20 iterations keep it to about 20 s of training.
    data = tmp_path / "data"
    assert run_cli("data", "synth", "--root", str(data), "--n-train", "16", "--n-aug", "16", "--n-val", "8").returncode == 0
    bundle = bundle_for("smoke_cpu_2node", 2, "train.iterations=20", "train.val_interval=20", "train.log_interval=10")
    results, mount = tmp_path / "results", tmp_path / "inputs"
    moves = [(RUN_FILES_MOUNT, str(mount)), (f"{RESULTS_MOUNT}/runs/", f"{results}/runs/"),
             (DATASET_MOUNT, str(data / "VOCdevkit"))]
    script = _pod_files(bundle, mount, moves)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    trainer = {**os.environ, "PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": "127.0.0.1",
               "PET_MASTER_PORT": str(port)}
    pods = [subprocess.Popen(["sh", "-c", script], env={**trainer, "PET_NODE_RANK": str(rank)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outcomes = [pod.communicate(timeout=600) for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0], [err[-2000:] for _, err in outcomes]
    run_dir = results / "runs" / bundle.run_id
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "succeeded" and status["executor"] == "kubernetes/trainjob"
    assert (run_dir / "nodes" / "node-1.log").stat().st_size > 0
    imported = run_cli("ingest", str(results), "--results", str(tmp_path / "mine"))
    assert imported.returncode == 0, imported.stderr
    assert f"imported run {bundle.run_id} (succeeded, final mIoU" in imported.stdout
    [mine] = RunStore(tmp_path / "mine").all()
    result = mine.result()
    assert result.parse_error is None and result.iterations == 20 and result.final.mIoU >= 0
