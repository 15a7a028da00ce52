"""`harness k8s`: manifests for Kubeflow PyTorchJob, Volcano Job and MindCluster AscendJob, checked
offline against the operators' published CRD schemas (tests/fixtures/crds/, see SOURCES there; made
strict: unknown fields fail) and against the harness's own semantic rules. Hand-broken manifests
must fail with a message naming the problem."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import require_extra  # noqa: E402

require_extra("kubernetes", reason="the 'k8s' extra is not installed (pip install '.[k8s]')")

from harness.core.errors import BadInput  # noqa: E402
from harness.k8s.jobs import build_bundle  # noqa: E402
from harness.k8s.options import K8sOptions  # noqa: E402
from harness.k8s.run_files import node_script, run_files  # noqa: E402
from harness.k8s.schema import schema_problems, strict_schema  # noqa: E402
from harness.k8s.validate import ManifestError, bundle_problems, check_manifests  # noqa: E402
from harness.planning.launch import NodeLaunch, scheduler_rendezvous  # noqa: E402
from harness.planning.plan import PlanInputs, build_plan  # noqa: E402
from harness.planning.recipe import load_recipe  # noqa: E402
from harness.store.runs import RUN_ID_PATTERN, RunStore  # noqa: E402
from support import RECIPES, REPO, run_cli  # noqa: E402

CRDS = Path(__file__).parent / "fixtures" / "crds"
CRD_FILE = {
    "pytorchjob": "kubeflow.org_v1_pytorchjob.json",
    "volcano": "batch.volcano.sh_v1alpha1_job.json",
    "ascendjob": "mindxdl.gitee.com_v1_ascendjob.json",
}
DEVICE_RECIPES = {"npu": "full_8p", "gpu": "gpu_full_8p"}
MATRIX = [(f, k) for f in CRD_FILE for k in DEVICE_RECIPES if not (f == "ascendjob" and k == "gpu")]


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict]:
    return {flavor: strict_schema(json.loads((CRDS / name).read_text())) for flavor, name in CRD_FILE.items()}


def bundle_for(flavor: str, recipe: str, nodes: int = 2, *sets: str):
    loaded = load_recipe(RECIPES / f"{recipe}.yaml", [f"device.nodes={nodes}", *sets])
    return build_bundle(loaded, K8sOptions(flavor, "training", "registry.example/pspnet:1", "voc-data", "pspnet-results"))


def pods_of(flavor: str, job: dict) -> list[tuple[int, dict]]:
    spec = job["spec"]
    if flavor == "volcano":
        return [(t["replicas"], t["template"]["spec"]) for t in spec["tasks"]]
    key = "pytorchReplicaSpecs" if flavor == "pytorchjob" else "replicaSpecs"
    return [(r["replicas"], r["template"]["spec"]) for r in spec[key].values()]


@pytest.mark.parametrize("flavor, kind", MATRIX)
def test_two_node_8p_manifests_pass_the_crd_schema_and_the_rules(schemas, flavor, kind):
    bundle = bundle_for(flavor, DEVICE_RECIPES[kind])
    assert schema_problems(bundle.job, schemas[flavor]) == []
    assert bundle_problems(list(bundle.manifests)) == []
    pods = pods_of(flavor, bundle.job)
    assert sum(replicas for replicas, _ in pods) == 2
    resource = {"npu": "huawei.com/Ascend910", "gpu": "nvidia.com/gpu"}[kind]
    for _, pod in pods:
        container = pod["containers"][0]
        assert container["name"] == {"pytorchjob": "pytorch", "volcano": "node", "ascendjob": "ascend"}[flavor]
        assert container["resources"]["requests"] == container["resources"]["limits"] == {resource: "8"}
        assert container["securityContext"]["privileged"] is False
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        shm = next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]
        assert shm == {"medium": "Memory", "sizeLimit": "32Gi"}  # 4 GB per device x 8, as the Docker executor
        script = container["command"][-1]
        assert "--nnodes=2" in script and "--nproc_per_node=8" in script and "WORLD_SIZE" not in script
        assert f"runs/{bundle.run_id}" in script and RUN_ID_PATTERN.match(bundle.run_id)
        if kind == "npu":
            assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
            assert "securityContext" not in pod  # root: the driver's device nodes (see harness/k8s/pods.py)
        else:
            assert "hostNetwork" not in pod
            assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    if flavor == "volcano":
        assert bundle.job["spec"]["minAvailable"] == 2
    if flavor == "ascendjob":
        assert bundle.job["spec"]["runPolicy"]["schedulingPolicy"]["minAvailable"] == 2
        assert bundle.job["metadata"]["labels"]["framework"] == "pytorch"
    if flavor == "pytorchjob":
        assert bundle.job["spec"]["nprocPerNode"] == "8"
        assert set(bundle.job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}


def test_ascendjob_is_for_npus_only():
    with pytest.raises(BadInput, match="ascendjob is MindCluster's operator for Ascend NPUs"):
        bundle_for("ascendjob", "gpu_full_8p")


def test_one_node_pytorchjob_has_a_master_only(schemas):
    bundle = bundle_for("pytorchjob", "gpu_full_8p", 1)
    assert set(bundle.job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert schema_problems(bundle.job, schemas["pytorchjob"]) == [] and bundle_problems(list(bundle.manifests)) == []


def test_the_strict_schema_rejects_a_misspelt_field(schemas):
    # The API server would silently drop it; the test schema must not let it through.
    job = copy.deepcopy(bundle_for("volcano", "full_8p").job)
    job["spec"]["minAvaliable"] = 2
    assert any("minAvaliable" in p for p in schema_problems(job, schemas["volcano"]))
    job = copy.deepcopy(bundle_for("pytorchjob", "gpu_full_8p").job)
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    assert schema_problems(job, schemas["pytorchjob"])


def _container(flavor, job, role="Worker"):
    if flavor == "volcano":
        return job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
    key = "pytorchReplicaSpecs" if flavor == "pytorchjob" else "replicaSpecs"
    return job["spec"][key][role]["template"]["spec"]["containers"][0]


def _pod(flavor, job, role="Worker"):
    if flavor == "volcano":
        return job["spec"]["tasks"][0]["template"]["spec"]
    key = "pytorchReplicaSpecs" if flavor == "pytorchjob" else "replicaSpecs"
    return job["spec"][key][role]["template"]["spec"]


BREAKS = [
    ("volcano", "npu", lambda j: j["spec"].update(minAvailable=1), "spec.minAvailable is 1 but the job has 2 pods"),
    ("ascendjob", "npu", lambda j: j["spec"]["runPolicy"]["schedulingPolicy"].update(minAvailable=3),
     "schedulingPolicy.minAvailable is 3 but the job has 2 pods"),
    ("pytorchjob", "gpu", lambda j: j["spec"]["pytorchReplicaSpecs"]["Worker"].update(replicas=2),
     "the job has 3 pods but 2 nodes are intended"),
    ("pytorchjob", "npu", lambda j: _container("pytorchjob", j)["resources"]["limits"].update({"huawei.com/Ascend910": "4"}),
     "huawei.com/Ascend910 requests '8' != limits '4'"),
    ("volcano", "gpu", lambda j: [_container("volcano", j)["resources"][k].update({"nvidia.com/gpu": "4"}) for k in ("requests", "limits")],
     "4 nvidia.com/gpu per pod x 2 pods != world size 16"),
    ("volcano", "npu", lambda j: _container("volcano", j)["resources"]["limits"].update({"nvidia.com/gpu": "8"}),
     "requests nvidia.com/gpu but the recipe's devices are npu"),
    ("pytorchjob", "gpu", lambda j: _container("pytorchjob", j).update(name="trainer"), "no container named 'pytorch'"),
    ("ascendjob", "npu", lambda j: _container("ascendjob", j, "Master").update(name="main"), "no container named 'ascend'"),
    ("ascendjob", "npu", lambda j: _container("ascendjob", j, "Master")["ports"][0].update(name="port"), "no port named 'ascendjob-port'"),
    ("pytorchjob", "gpu", lambda j: _container("pytorchjob", j)["ports"][0].update(containerPort=1234),
     "port pytorchjob-port is 1234"),
    ("pytorchjob", "gpu", lambda j: j["spec"].update(nprocPerNode="4"), "spec.nprocPerNode is '4', expected '8'"),
    ("volcano", "gpu", lambda j: _container("volcano", j)["securityContext"].update(privileged=True), "privileged pods are not allowed"),
    ("volcano", "gpu", lambda j: (_pod("volcano", j).pop("securityContext"), _container("volcano", j)["securityContext"].pop("runAsNonRoot")),
     "non-root user"),
    ("pytorchjob", "gpu", lambda j: _container("pytorchjob", j).update(
        command=["/bin/sh", "-c", _container("pytorchjob", j)["command"][-1].replace("--nnodes=2", "--nnodes=$WORLD_SIZE")]),
     "uses WORLD_SIZE"),
    ("volcano", "npu", lambda j: _pod("volcano", j).pop("hostNetwork"), "NPU pods need hostNetwork: true"),
    ("ascendjob", "npu", lambda j: [v["emptyDir"].pop("medium") for v in _pod("ascendjob", j)["volumes"] if v["name"] == "shm"],
     "/dev/shm must be an emptyDir with medium Memory"),
    ("volcano", "gpu", lambda j: j["spec"].pop("plugins"), "the 'svc' plugin is needed"),
    ("ascendjob", "npu", lambda j: j["metadata"]["labels"].pop("framework"), "AscendJob needs framework: pytorch"),
    ("pytorchjob", "gpu", lambda j: [m.update(readOnly=False) for m in _container("pytorchjob", j)["volumeMounts"]
                                     if m["mountPath"] == "/data/VOCdevkit"], "the dataset PVC must be mounted read-only"),
]


@pytest.mark.parametrize("flavor, kind, breaking, message", BREAKS, ids=[m for *_, m in BREAKS])
def test_a_hand_broken_manifest_fails_with_a_clear_message(flavor, kind, breaking, message):
    bundle = bundle_for(flavor, DEVICE_RECIPES[kind])
    manifests = copy.deepcopy(list(bundle.manifests))
    breaking(manifests[-1])
    problems = bundle_problems(manifests)
    assert any(message in p for p in problems), problems
    with pytest.raises(ManifestError) as error:
        check_manifests(manifests, "broken.yaml")
    assert str(error.value).startswith("broken.yaml: ") and "\n" not in str(error.value)


def test_a_missing_configmap_key_is_caught():
    manifests = copy.deepcopy(list(bundle_for("volcano", "gpu_full_8p").manifests))
    manifests[0]["data"].pop(next(k for k in manifests[0]["data"] if k.endswith("job.json")))
    assert any("has no key" in p for p in bundle_problems(manifests))


def test_rank_table_goes_into_a_configmap_mounted_read_only(tmp_path, schemas):
    table = {"version": "1.0", "server_count": "2", "status": "completed", "server_list": [
        {"server_id": f"10.0.0.{s}", "device": [{"device_id": str(d), "device_ip": f"192.168.{s}.{d}", "rank_id": str(8 * s + d)}
                                               for d in range(8)]} for s in range(2)]}
    (tmp_path / "rt.json").write_text(json.dumps(table))
    bundle = bundle_for("ascendjob", "full_8p", 2, f"device.rank_table={tmp_path / 'rt.json'}")
    names = [m["metadata"]["name"] for m in bundle.manifests if m["kind"] == "ConfigMap"]
    assert names == [f"{bundle.name}-run", f"{bundle.name}-rank-table"]
    container = _container("ascendjob", bundle.job)
    assert {"name": "RANK_TABLE_FILE", "value": "/workspace/inputs/rank_table/rank_table.json"} in container["env"]
    assert any(m["name"] == "rank-table" and m["readOnly"] for m in container["volumeMounts"])
    assert schema_problems(bundle.job, schemas["ascendjob"]) == [] and bundle_problems(list(bundle.manifests)) == []


@pytest.mark.parametrize("flavor", list(CRD_FILE))
def test_cli_writes_valid_manifests(tmp_path, schemas, flavor):
    proc = run_cli("k8s", str(RECIPES / "full_8p.yaml"), "--nodes", "2", "--flavor", flavor, "--namespace", "ml",
                   "--dataset-pvc", "voc", "--results-pvc", "runs", "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    manifests = list(yaml.safe_load_all((tmp_path / "out" / "manifests.yaml").read_text()))
    assert bundle_problems(manifests) == []
    assert schema_problems(manifests[-1], schemas[flavor]) == []
    assert {m["metadata"]["namespace"] for m in manifests} == {"ml"}
    assert "16 ranks" in proc.stderr and "kubectl apply" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--flavor", "ascendjob", str(RECIPES / "gpu_full_8p.yaml")], "Ascend NPUs"),
    (["--flavor", "volcano", "--results-pvc", "Bad_Name", str(RECIPES / "full_8p.yaml")], "--results-pvc 'Bad_Name'"),
    (["--flavor", "volcano", "--nodes", "0", str(RECIPES / "full_8p.yaml")], "must be >= 1"),
    # issue 17, L3: what would be written into a manifest as it is
    (["--flavor", "volcano", "--queue", "Bad Queue;$(x)", str(RECIPES / "full_8p.yaml")], "--queue 'Bad Queue;$(x)'"),
    (["--flavor", "volcano", "--dataset-subpath", "../../etc", str(RECIPES / "full_8p.yaml")], "--dataset-subpath '../../etc'"),
    (["--flavor", "volcano", "--dataset-subpath", "/etc", str(RECIPES / "full_8p.yaml")], "--dataset-subpath '/etc'"),
    (["--flavor", "volcano", "--image", "registry.example/pspnet:\u00e9", str(RECIPES / "full_8p.yaml")], "--image"),
    (["--flavor", "volcano", "--image", "registry.example/pspnet:1\nx", str(RECIPES / "full_8p.yaml")], "--image"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    base = ["--dataset-pvc", "voc", "-o", str(tmp_path / "out")]
    if "--results-pvc" not in args:
        base += ["--results-pvc", "runs"]
    proc = run_cli("k8s", *args, *base)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_dataset_subpath_inside_the_pvc_is_kept(schemas):
    loaded = load_recipe(RECIPES / "full_8p.yaml", ["device.nodes=2"])
    bundle = build_bundle(loaded, K8sOptions("volcano", "training", "registry.example/pspnet:1", "voc-data", "runs",
                                             dataset_subpath="datasets/VOC 2012/VOCdevkit", queue="research-a"))
    assert "subPath: datasets/VOC 2012/VOCdevkit" in bundle.to_yaml()


def test_an_output_that_is_a_file_is_one_line_exit_2_and_the_file_is_kept(tmp_path):
    """M12: -o names a folder; an existing file there is bad input, never overwritten."""
    existing = tmp_path / "taken"
    existing.write_text("mine\n")
    proc = run_cli("k8s", str(RECIPES / "full_8p.yaml"), "--flavor", "volcano", "--dataset-pvc", "voc",
                   "--results-pvc", "runs", "-o", str(existing))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert f"-o {existing}: expected a folder" in proc.stderr
    assert existing.read_text() == "mine\n"


def test_other_commands_do_not_import_the_kubernetes_client():
    code = "import sys, harness.cli; harness.cli.build_parser(); print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "False"


def test_node_script_keeps_the_run_folder_in_the_run_store_layout(tmp_path):
    # The pods' script, run for real by sh: torchrun is replaced by a command that prints and fails.
    loaded = load_recipe(RECIPES / "smoke_cpu_2node.yaml")
    results = tmp_path / "results"
    run_id = "20261201T000000Z-smoke_cpu_2node-abc123"
    run_dir = results / "runs" / run_id
    plan = build_plan(loaded.recipe, PlanInputs(str(run_dir), "/data", loaded.config_path.name), "local")
    files = run_files(loaded, loaded.data, plan.to_dict(), plan, run_id)
    mount = tmp_path / "inputs"
    for path, text in files.files.items():
        (mount / path).parent.mkdir(parents=True, exist_ok=True)
        (mount / path).write_text(text)
    rendezvous = scheduler_rendezvous("volcano", plan.master_port)
    fake = NodeLaunch(0, ("sh", "-c", 'echo "rank at $MASTER_ADDR"; exit 3'))
    script = node_script(fake, rendezvous, files, run_dir=str(run_dir), files_mount=str(mount),
                         executor="kubernetes/volcano", recipe="smoke_cpu_2node")
    env = {"PATH": os.environ["PATH"], "VC_NODE_HOSTS": "job-node-0.job,job-node-1.job"}
    node0 = subprocess.run(["sh", "-c", script], env={**env, "VC_TASK_INDEX": "0"}, capture_output=True, text=True)
    node1 = subprocess.run(["sh", "-c", script], env={**env, "VC_TASK_INDEX": "1"}, capture_output=True, text=True)
    assert node0.returncode == 3 and node1.returncode == 3, (node0.stderr, node1.stderr)
    # the run store's layout, as the Docker and Slurm executors write it
    assert (run_dir / "train.log").read_text() == "rank at job-node-0.job\n"
    for node in (0, 1):
        assert (run_dir / "nodes" / f"node-{node}.log").read_text() == "rank at job-node-0.job\n"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["exit_code"] == 3 and status["executor"] == "kubernetes/volcano"
    assert json.loads((run_dir / "job.json").read_text())["world_size"] == 2
    assert (run_dir / "configs" / loaded.config_path.name).is_file()
    [run] = RunStore(results).all()  # the PVC's folder is a run store `harness report` reads
    assert run.run_id == run_id and run.effective_state() == "failed"
    proc = run_cli("report", "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    # the PVC's contents come home with `harness ingest`, a result built from what the pods logged
    imported = run_cli("ingest", str(results), "--results", str(tmp_path / "mine"))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"{run_dir}: imported run {run_id} (failed)"
    [mine] = RunStore(tmp_path / "mine").all()
    assert mine.effective_state() == "failed" and mine.result().parse_error  # the stand-in torchrun trained nothing


def test_the_pods_status_json_is_every_field_of_the_run_status_model(tmp_path):
    from harness.k8s.run_files import _status_writer
    from harness.store.records import RunStatus

    script = f'{_status_writer(str(tmp_path), "kubernetes/volcano", "smoke_cpu_2node")}\nCREATED=2026-12-01T00:00:00Z\nstatus failed 3\n'
    subprocess.run(["sh", "-c", script], check=True)
    text = (tmp_path / "status.json").read_text()
    assert sorted(json.loads(text)) == sorted(RunStatus.model_fields)
    status = RunStatus.model_validate_json(text)
    assert (status.state, status.exit_code, status.executor, status.created) == ("failed", 3, "kubernetes/volcano", "2026-12-01T00:00:00Z")
